package io.bolt.client;

import io.bolt.v1.Execution;
import io.bolt.v1.State;
import java.nio.charset.StandardCharsets;

/**
 * What {@link BoltClient#run} returns: the final record of the execution and its
 * output (each stream capped at the limit given to run; {@link #outputTruncated}
 * tells when the client dropped bytes).
 */
public record RunResult(Execution execution, byte[] stdout, byte[] stderr, boolean outputTruncated) {
  public String executionId() {
    return execution.getExecutionId();
  }

  public State state() {
    return execution.getState();
  }

  public boolean succeeded() {
    return execution.getState() == State.STATE_SUCCEEDED;
  }

  public String stdoutText() {
    return new String(stdout, StandardCharsets.UTF_8);
  }

  public String stderrText() {
    return new String(stderr, StandardCharsets.UTF_8);
  }
}
