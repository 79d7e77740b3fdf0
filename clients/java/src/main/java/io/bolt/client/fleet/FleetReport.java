package io.bolt.client.fleet;

import java.time.Duration;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * The result of a rollout: one {@link InstanceResult} per instance, in inventory
 * order, and whether the failure budget stopped it.
 */
public record FleetReport(String runId, Task task, RolloutOptions options, List<InstanceResult> results,
    boolean stopped, int errors, int allowedErrors, Duration wallTime) {

  /** True when no instance had an error and the budget did not stop the run. */
  public boolean ok() {
    return errors == 0 && !stopped;
  }

  /** The JSON form shared with the Python client's {@code FleetReport.to_dict} (for scripts). */
  public com.google.gson.JsonObject toJson() {
    com.google.gson.JsonObject o = new com.google.gson.JsonObject();
    o.addProperty("run_id", runId);
    o.addProperty("action", task == null ? "" : task.pack() + "/" + task.action());
    if (options != null) {
      o.addProperty("strategy", options.strategy().wireName());
      if (options.maxConcurrency() == 0) {
        o.add("max_concurrency", com.google.gson.JsonNull.INSTANCE);
      } else {
        o.addProperty("max_concurrency", options.maxConcurrency());
      }
      if (options.maxErrors().isPercent()) {
        o.addProperty("max_errors", options.maxErrors().toString());
      } else {
        o.addProperty("max_errors", options.maxErrors().count());
      }
    }
    o.addProperty("stopped", stopped);
    o.addProperty("errors", errors);
    o.addProperty("allowed_errors", allowedErrors);
    o.addProperty("duration", wallTime.toMillis() / 1000.0);
    com.google.gson.JsonObject counts = new com.google.gson.JsonObject();
    counts().forEach((k, v) -> counts.addProperty(k.name(), v));
    o.add("counts", counts);
    com.google.gson.JsonArray list = new com.google.gson.JsonArray();
    results.forEach(r -> list.add(r.toJson()));
    o.add("instances", list);
    return o;
  }

  public Optional<InstanceResult> result(String instanceId) {
    return results.stream().filter(r -> r.id().equals(instanceId)).findFirst();
  }

  public Map<Outcome, Integer> counts() {
    Map<Outcome, Integer> m = new EnumMap<>(Outcome.class);
    for (InstanceResult r : results) {
      m.merge(r.outcome(), 1, Integer::sum);
    }
    return m;
  }

  /** True when every instance SUCCEEDED. */
  public boolean succeeded() {
    return results.stream().allMatch(r -> r.outcome() == Outcome.SUCCEEDED);
  }

  /** A fixed-width table for humans. */
  public String table() {
    StringBuilder sb = new StringBuilder();
    sb.append(String.format("%-20s %-12s %-10s %-5s %9s  %s%n", "INSTANCE", "ZONE", "OUTCOME", "EXIT", "SECONDS", "ERROR"));
    for (InstanceResult r : results) {
      sb.append(String.format("%-20s %-12s %-10s %-5s %9.2f  %s%n", r.id(), r.instance().availabilityZone(),
          r.outcome(), r.exitCode().map(String::valueOf).orElse("-"), r.duration().toMillis() / 1000.0,
          r.error()));
    }
    sb.append(counts()).append(stopped ? " stopped by the failure budget" : "").append('\n');
    return sb.toString();
  }
}
