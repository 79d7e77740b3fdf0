package io.bolt.client.fleet;

import io.bolt.client.Executions;
import io.bolt.client.inventory.InventoryInstance;
import io.bolt.v1.Execution;
import java.time.Duration;
import java.time.Instant;
import java.util.Optional;

/**
 * One line of a rollout's report.
 *
 * @param instance the instance
 * @param outcome its report state
 * @param executionId id of its execution; empty when none was started
 * @param execution final record of the execution; null when none was obtained
 * @param outputExcerpt the last bytes of its output (stdout and stderr as recorded), UTF-8
 * @param error why the outcome is ERROR or UNHEALTHY (or the execution's own error); empty otherwise
 * @param clientDuration time from the first call for this instance to its result, client side
 */
public record InstanceResult(InventoryInstance instance, Outcome outcome, String executionId, Execution execution,
    String outputExcerpt, String error, Duration clientDuration) {

  public static InstanceResult skipped(InventoryInstance instance) {
    return new InstanceResult(instance, Outcome.SKIPPED, "", null, "", "", Duration.ZERO);
  }

  public String id() {
    return instance.id();
  }

  public Optional<Integer> exitCode() {
    return execution != null && execution.hasExitCode() ? Optional.of(execution.getExitCode()) : Optional.empty();
  }

  /** The agent's start time (creation time if it never started). */
  public Optional<Instant> startedAt() {
    if (execution == null) {
      return Optional.empty();
    }
    if (execution.hasStartedAt()) {
      return Executions.startedAt(execution);
    }
    return execution.hasCreatedAt() ? Optional.of(Executions.toInstant(execution.getCreatedAt())) : Optional.empty();
  }

  public Optional<Instant> endedAt() {
    return execution == null ? Optional.empty() : Executions.endedAt(execution);
  }

  /** Run time by the agent's clock when known, else the client's. */
  public Duration duration() {
    Optional<Instant> s = startedAt();
    Optional<Instant> e = endedAt();
    return s.isPresent() && e.isPresent() ? Duration.between(s.get(), e.get()) : clientDuration;
  }

  /** The JSON form shared with the Python client's {@code InstanceReport.to_dict}. */
  public com.google.gson.JsonObject toJson() {
    com.google.gson.JsonObject o = new com.google.gson.JsonObject();
    o.add("instance", instance.toJson());
    o.addProperty("outcome", outcome.name());
    o.addProperty("execution_id", executionId);
    if (exitCode().isPresent()) {
      o.addProperty("exit_code", exitCode().get());
    } else {
      o.add("exit_code", com.google.gson.JsonNull.INSTANCE);
    }
    o.addProperty("duration", duration().toMillis() / 1000.0);
    o.addProperty("output_excerpt", outputExcerpt);
    o.addProperty("error", error);
    o.addProperty("started_at", startedAt().map(Instant::toString).orElse(null));
    o.addProperty("ended_at", endedAt().map(Instant::toString).orElse(null));
    return o;
  }

  /** True when an execution was started for this instance. */
  public boolean started() {
    return !executionId.isEmpty();
  }
}
