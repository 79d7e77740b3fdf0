package io.bolt.client.fleet;

import io.bolt.v1.State;

/** The one report state of each instance of a rollout (same names as the Python client). */
public enum Outcome {
  SUCCEEDED, FAILED, TIMED_OUT, KILLED, OOM_KILLED, LOST,
  /** Never started: the failure budget was exceeded first. */
  SKIPPED,
  /** The health gate failed (Health errored or said NOT_SERVING); nothing was executed. */
  UNHEALTHY,
  /** A call failed: Execute refused or unreachable, output stream broken. */
  ERROR;

  /** Every outcome but SUCCEEDED and SKIPPED counts against the failure budget. */
  public boolean isError() {
    return this != SUCCEEDED && this != SKIPPED;
  }

  /** The outcome of a finished execution in this state. */
  public static Outcome of(State state) {
    return switch (state) {
      case STATE_SUCCEEDED -> SUCCEEDED;
      case STATE_FAILED -> FAILED;
      case STATE_TIMED_OUT -> TIMED_OUT;
      case STATE_KILLED -> KILLED;
      case STATE_OOM_KILLED -> OOM_KILLED;
      case STATE_LOST -> LOST;
      default -> ERROR;
    };
  }
}
