package io.bolt.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bolt.v1.BoltGrpc;
import io.bolt.v1.ExecuteRequest;
import io.bolt.v1.ExecuteResponse;
import io.bolt.v1.Execution;
import io.bolt.v1.GetExecutionRequest;
import io.bolt.v1.KillRequest;
import io.bolt.v1.KillResponse;
import io.bolt.v1.OutputChunk;
import io.bolt.v1.State;
import io.bolt.v1.StreamOutputRequest;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.stub.StreamObserver;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Client-side behaviour that a real agent cannot be made to show on demand
 * (transport failures at chosen moments), against an in-process fake. The real
 * contract is tested against real agents in {@link AgentClientTest}.
 */
class InProcessClientTest {
  private Server server;
  private ManagedChannel channel;
  private final Fake fake = new Fake();

  static final class Fake extends BoltGrpc.BoltImplBase {
    final AtomicInteger failExecutes = new AtomicInteger();
    final List<String> executeKeys = new CopyOnWriteArrayList<>();
    final AtomicInteger kills = new AtomicInteger();
    final AtomicInteger streamCalls = new AtomicInteger();
    final List<Long> streamOffsets = new CopyOnWriteArrayList<>();
    /** Reopened streams refused before one is served (an agent restarting). */
    final AtomicInteger streamOutages = new AtomicInteger();

    @Override
    public void execute(ExecuteRequest req, StreamObserver<ExecuteResponse> out) {
      executeKeys.add(req.getIdempotencyKey());
      if (failExecutes.getAndDecrement() > 0) {
        out.onError(Status.UNAVAILABLE.withDescription("flaky").asRuntimeException());
        return;
      }
      out.onNext(ExecuteResponse.newBuilder().setExecutionId("e-1").setState(State.STATE_PENDING).build());
      out.onCompleted();
    }

    @Override
    public void getExecution(GetExecutionRequest req, StreamObserver<Execution> out) {
      out.onError(Status.INVALID_ARGUMENT.withDescription("bad id").asRuntimeException());
    }

    @Override
    public void kill(KillRequest req, StreamObserver<KillResponse> out) {
      kills.incrementAndGet();
      out.onError(Status.UNAVAILABLE.asRuntimeException());
    }

    @Override
    public void streamOutput(StreamOutputRequest req, StreamObserver<OutputChunk> out) {
      streamOffsets.add(req.getOffset());
      int call = streamCalls.incrementAndGet();
      if (call == 1) {
        out.onNext(chunk(0, "hello "));
        out.onError(Status.UNAVAILABLE.withDescription("connection reset").asRuntimeException());
        return;
      }
      if (streamOutages.getAndDecrement() > 0) {
        out.onError(Status.UNAVAILABLE.withDescription("restarting").asRuntimeException());
        return;
      }
      out.onNext(chunk(req.getOffset(), "world"));
      out.onNext(OutputChunk.newBuilder().setEnd(true)
          .setExecution(Execution.newBuilder().setExecutionId("e-1").setState(State.STATE_SUCCEEDED)).build());
      out.onCompleted();
    }

    static OutputChunk chunk(long offset, String s) {
      return OutputChunk.newBuilder().setOffset(offset).setStream(io.bolt.v1.Stream.STREAM_STDOUT)
          .setData(com.google.protobuf.ByteString.copyFromUtf8(s)).build();
    }
  }

  @BeforeEach
  void setUp() throws Exception {
    String name = InProcessServerBuilder.generateName();
    server = InProcessServerBuilder.forName(name).directExecutor().addService(fake).build().start();
    channel = InProcessChannelBuilder.forName(name).directExecutor().build();
  }

  @AfterEach
  void tearDown() throws Exception {
    channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
  }

  private BoltClient client() {
    return new BoltClient(channel, Duration.ofSeconds(5),
        new RetryPolicy(4, Duration.ofMillis(1), Duration.ofMillis(5)));
  }

  @Test
  void executeRetriesWithOneGeneratedKey() {
    fake.failExecutes.set(2);
    ExecuteResponse r = client().execute("p", "a", Map.of());
    assertEquals("e-1", r.getExecutionId());
    assertEquals(3, fake.executeKeys.size());
    assertFalse(fake.executeKeys.get(0).isEmpty());
    assertEquals(1, fake.executeKeys.stream().distinct().count(), "every attempt carries the same key");
  }

  @Test
  void executeKeepsTheCallersKey() {
    fake.failExecutes.set(1);
    client().executeAsync(ExecuteRequest.newBuilder().setPack("p").setAction("a").setIdempotencyKey("k1").build())
        .join();
    assertEquals(List.of("k1", "k1"), fake.executeKeys);
  }

  @Test
  void retriesStopAfterMaxAttempts() {
    fake.failExecutes.set(100);
    assertThrows(BoltException.UnavailableException.class, () -> client().execute("p", "a", Map.of()));
    assertEquals(4, fake.executeKeys.size());
  }

  @Test
  void requestErrorsAreNotRetried() {
    BoltException e = assertThrows(BoltException.InvalidArgumentException.class, () -> client().getExecution("x"));
    assertTrue(e.getMessage().contains("bad id"));
  }

  @Test
  void tailResumesFromTheNextOffsetAfterADrop() {
    StringBuilder text = new StringBuilder();
    Execution last = null;
    try (OutputTail tail = client().tail("e-1")) {
      while (tail.hasNext()) {
        OutputChunk c = tail.next();
        if (c.getEnd()) {
          last = c.getExecution();
        } else {
          text.append(c.getData().toStringUtf8());
        }
      }
    }
    assertEquals("hello world", text.toString());
    assertEquals(List.of(0L, 6L), fake.streamOffsets);
    assertEquals(State.STATE_SUCCEEDED, last.getState());
  }

  @Test
  void tailKeepsReconnectingThroughALongOutageNotJustForTheRetryAttempts() {
    fake.streamOutages.set(12); // three times the policy's 4 attempts
    StringBuilder text = new StringBuilder();
    try (OutputTail tail = client().tail("e-1")) {
      tail.forEachRemaining(c -> text.append(c.getData().toStringUtf8()));
    }
    assertEquals("hello world", text.toString());
    assertEquals(14, fake.streamOffsets.size());
    assertEquals(6L, fake.streamOffsets.get(13));
  }

  @Test
  void observerTailResumesToo() throws Exception {
    List<String> seen = new ArrayList<>();
    OutputSubscription sub = client().tail("e-1", 0, true, new StreamObserver<>() {
      @Override
      public void onNext(OutputChunk c) {
        synchronized (seen) {
          seen.add(c.getEnd() ? "END" : c.getData().toStringUtf8());
        }
      }

      @Override
      public void onError(Throwable t) {}

      @Override
      public void onCompleted() {}
    });
    Execution e = sub.completion().toCompletableFuture().get(5, TimeUnit.SECONDS);
    assertEquals(State.STATE_SUCCEEDED, e.getState());
    assertEquals(List.of("hello ", "world", "END"), seen);
  }
}
