package io.bolt.client;

import io.bolt.v1.Execution;
import io.bolt.v1.State;
import java.time.Duration;
import java.time.Instant;
import java.util.Optional;

/** Small helpers over the generated {@link Execution} record. */
public final class Executions {
  private Executions() {}

  /** PENDING and RUNNING are live; every other state (UNSPECIFIED aside) is final. */
  public static boolean isFinal(State state) {
    return switch (state) {
      case STATE_PENDING, STATE_RUNNING, STATE_UNSPECIFIED, UNRECOGNIZED -> false;
      default -> true;
    };
  }

  public static boolean isFinal(Execution e) {
    return isFinal(e.getState());
  }

  /** The short name of a state: {@code STATE_SUCCEEDED} becomes {@code SUCCEEDED}. */
  public static String name(State state) {
    String n = state.name();
    return n.startsWith("STATE_") ? n.substring("STATE_".length()) : n;
  }

  public static Optional<Instant> startedAt(Execution e) {
    return e.hasStartedAt() ? Optional.of(toInstant(e.getStartedAt())) : Optional.empty();
  }

  public static Optional<Instant> endedAt(Execution e) {
    return e.hasEndedAt() ? Optional.of(toInstant(e.getEndedAt())) : Optional.empty();
  }

  /** Run time from start to end, when both are known. */
  public static Optional<Duration> runTime(Execution e) {
    if (!e.hasStartedAt() || !e.hasEndedAt()) {
      return Optional.empty();
    }
    return Optional.of(Duration.between(startedAt(e).get(), endedAt(e).get()));
  }

  public static Instant toInstant(com.google.protobuf.Timestamp t) {
    return Instant.ofEpochSecond(t.getSeconds(), t.getNanos());
  }

  public static com.google.protobuf.Timestamp toTimestamp(Instant i) {
    return com.google.protobuf.Timestamp.newBuilder()
        .setSeconds(i.getEpochSecond())
        .setNanos(i.getNano())
        .build();
  }

  public static com.google.protobuf.Duration toProto(Duration d) {
    return com.google.protobuf.Duration.newBuilder()
        .setSeconds(d.getSeconds())
        .setNanos(d.getNano())
        .build();
  }

  public static Duration fromProto(com.google.protobuf.Duration d) {
    return Duration.ofSeconds(d.getSeconds(), d.getNanos());
  }
}
