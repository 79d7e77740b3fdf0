package io.bolt.client.fleet;

import io.bolt.client.Executions;
import io.bolt.v1.BoltGrpc;
import io.bolt.v1.ExecuteRequest;
import io.bolt.v1.ExecuteResponse;
import io.bolt.v1.Execution;
import io.bolt.v1.GetExecutionRequest;
import io.bolt.v1.HealthRequest;
import io.bolt.v1.HealthResponse;
import io.bolt.v1.KillRequest;
import io.bolt.v1.KillResponse;
import io.bolt.v1.OutputChunk;
import io.bolt.v1.ServingStatus;
import io.bolt.v1.State;
import io.bolt.v1.StreamOutputRequest;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * An in-process stand-in for an agent running {@code bolt-test/scenario}: sleeps
 * {@code seconds}, then FAILED when {@code fail}, else SUCCEEDED; TIMED_OUT past the
 * request's timeout; every call UNAVAILABLE when {@code down}. Only for checking
 * the orchestration logic quickly; the real contract is checked against real agents.
 */
final class FakeAgent extends BoltGrpc.BoltImplBase {
  static final ScheduledExecutorService TIMER = Executors.newScheduledThreadPool(2, r -> {
    Thread t = new Thread(r, "fake-agent");
    t.setDaemon(true);
    return t;
  });

  final boolean fail;
  final boolean down;
  /** Executions never end by themselves (an agent that misses its own timeout). */
  volatile boolean hang;
  /** What Health answers. */
  volatile HealthResponse health = HealthResponse.newBuilder().setStatus(ServingStatus.SERVING_STATUS_SERVING).build();
  private final Map<String, Execution> executions = new ConcurrentHashMap<>();
  private final Map<String, String> byKey = new ConcurrentHashMap<>();
  private final Map<String, List<StreamObserver<OutputChunk>>> followers = new ConcurrentHashMap<>();

  FakeAgent(boolean fail, boolean down) {
    this.fail = fail;
    this.down = down;
  }

  private boolean refuse(StreamObserver<?> out) {
    if (down) {
      out.onError(Status.UNAVAILABLE.withDescription("fake agent down").asRuntimeException());
    }
    return down;
  }

  @Override
  public void health(HealthRequest req, StreamObserver<HealthResponse> out) {
    if (refuse(out)) {
      return;
    }
    out.onNext(health);
    out.onCompleted();
  }

  @Override
  public synchronized void execute(ExecuteRequest req, StreamObserver<ExecuteResponse> out) {
    if (refuse(out)) {
      return;
    }
    String existing = byKey.get(req.getIdempotencyKey());
    if (existing != null) {
      out.onNext(ExecuteResponse.newBuilder().setExecutionId(existing).setDeduplicated(true).build());
      out.onCompleted();
      return;
    }
    String id = java.util.UUID.randomUUID().toString();
    byKey.put(req.getIdempotencyKey(), id);
    Instant now = Instant.now();
    Duration run = Duration.ofMillis(Math.round(Double.parseDouble(req.getArgsOrDefault("seconds", "0.3")) * 1000));
    Duration timeout = req.hasTimeout() ? Executions.fromProto(req.getTimeout()) : Duration.ofMinutes(5);
    State end = run.compareTo(timeout) > 0 ? State.STATE_TIMED_OUT : fail ? State.STATE_FAILED : State.STATE_SUCCEEDED;
    Duration until = run.compareTo(timeout) > 0 ? timeout : run;
    executions.put(id, Execution.newBuilder().setExecutionId(id).setPack(req.getPack()).setAction(req.getAction())
        .setState(State.STATE_RUNNING).setCreatedAt(Executions.toTimestamp(now))
        .setStartedAt(Executions.toTimestamp(now)).build());
    if (!hang) {
      TIMER.schedule(() -> finish(id, end), until.toMillis(), TimeUnit.MILLISECONDS);
    }
    out.onNext(ExecuteResponse.newBuilder().setExecutionId(id).setState(State.STATE_RUNNING).build());
    out.onCompleted();
  }

  /** How many executions were started here. */
  int executionCount() {
    return executions.size();
  }

  Execution execution(String id) {
    return executions.get(id);
  }

  private void finish(String id, State state) {
    List<StreamObserver<OutputChunk>> fs;
    Execution done;
    synchronized (this) {
      Execution e = executions.get(id);
      if (Executions.isFinal(e)) {
        return;
      }
      Execution.Builder b = e.toBuilder().setState(state).setEndedAt(Executions.toTimestamp(Instant.now()));
      if (state == State.STATE_FAILED) {
        b.setExitCode(1);
      } else if (state == State.STATE_SUCCEEDED) {
        b.setExitCode(0);
      }
      done = b.build();
      executions.put(id, done);
      fs = followers.remove(id);
    }
    if (fs != null) {
      for (StreamObserver<OutputChunk> f : fs) {
        try {
          f.onNext(OutputChunk.newBuilder().setEnd(true).setExecution(done).build());
          f.onCompleted();
        } catch (io.grpc.StatusRuntimeException cancelled) {
          // The client went away first (it cancels its stream on a client-side timeout).
        }
      }
    }
  }

  @Override
  public void getExecution(GetExecutionRequest req, StreamObserver<Execution> out) {
    if (refuse(out)) {
      return;
    }
    Execution e = executions.get(req.getExecutionId());
    if (e == null) {
      out.onError(Status.NOT_FOUND.asRuntimeException());
      return;
    }
    out.onNext(e);
    out.onCompleted();
  }

  @Override
  public void streamOutput(StreamOutputRequest req, StreamObserver<OutputChunk> out) {
    if (refuse(out)) {
      return;
    }
    synchronized (this) {
      Execution e = executions.get(req.getExecutionId());
      if (!Executions.isFinal(e)) {
        followers.computeIfAbsent(req.getExecutionId(), k -> new ArrayList<>()).add(out);
        return;
      }
      out.onNext(OutputChunk.newBuilder().setEnd(true).setExecution(e).build());
    }
    out.onCompleted();
  }

  @Override
  public void kill(KillRequest req, StreamObserver<KillResponse> out) {
    if (refuse(out)) {
      return;
    }
    finish(req.getExecutionId(), State.STATE_KILLED);
    out.onNext(KillResponse.newBuilder().setState(State.STATE_KILLED).build());
    out.onCompleted();
  }
}
