package io.bolt.client.fleet;

import com.google.common.base.Strings;
import java.time.Duration;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.StringJoiner;

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
      ConcurrencyLimit c = options.maxConcurrency();
      if (c == null) {
        o.add("max_concurrency", com.google.gson.JsonNull.INSTANCE);
      } else if (c.isPercent()) {
        o.addProperty("max_concurrency", c.toString());
      } else {
        o.addProperty("max_concurrency", c.count());
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

  /**
   * A table for humans, with the columns of the Python CLI's {@code bolt fleet run}:
   * INSTANCE, ADDRESS, AZ, REGION, OUTCOME, EXIT, DURATION, EXECUTION (the agent's
   * execution id, "-" when none was started) and DETAIL (the error, else the last
   * line of output), then a summary line.
   */
  public String table() {
    List<List<String>> rows = new ArrayList<>();
    rows.add(List.of("INSTANCE", "ADDRESS", "AZ", "REGION", "OUTCOME", "EXIT", "DURATION", "EXECUTION", "DETAIL"));
    for (InstanceResult r : results) {
      rows.add(List.of(r.id(), r.instance().target(), orDash(r.instance().availabilityZone()),
          orDash(r.instance().region()), r.outcome().name(), r.exitCode().map(String::valueOf).orElse("-"),
          String.format(Locale.ROOT, "%.2fs", r.duration().toMillis() / 1000.0), orDash(r.executionId()),
          lastLine(r.error().isEmpty() ? r.outputExcerpt() : r.error())));
    }
    int[] widths = new int[rows.get(0).size()];
    rows.forEach(row -> {
      for (int i = 0; i < widths.length; i++) {
        widths[i] = Math.max(widths[i], row.get(i).length());
      }
    });
    StringBuilder sb = new StringBuilder();
    for (List<String> row : rows) {
      StringBuilder line = new StringBuilder();
      for (int i = 0; i < widths.length; i++) {
        line.append(Strings.padEnd(row.get(i), widths[i] + 2, ' '));
      }
      sb.append(line.toString().stripTrailing()).append('\n');
    }
    StringJoiner counts = new StringJoiner(", ");
    counts().forEach((outcome, n) -> counts.add(n + " " + outcome));
    sb.append('\n').append(results.size()).append(" instances: ").append(counts).append("; ")
        .append(stopped ? "STOPPED by failure budget (" + errors + " errors > " + allowedErrors + " allowed)"
            : options == null ? errors + " errors" // collected handles: no budget
            : errors + " errors (" + allowedErrors + " allowed)")
        .append(String.format(Locale.ROOT, "; %.2fs", wallTime.toMillis() / 1000.0))
        .append(runId.isEmpty() ? "" : "; run id " + runId).append('\n');
    return sb.toString();
  }

  private static String orDash(String s) {
    return s.isEmpty() ? "-" : s;
  }

  /** The last non-blank line, at most 60 characters (as the Python CLI's DETAIL). */
  private static String lastLine(String text) {
    String last = text.lines().filter(l -> !l.isBlank()).reduce((a, b) -> b).orElse("").strip();
    return last.length() <= 60 ? last : last.substring(0, 59) + "…";
  }
}
