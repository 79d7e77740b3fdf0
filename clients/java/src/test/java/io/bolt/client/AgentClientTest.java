package io.bolt.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bolt.client.testing.TestAgent;
import io.bolt.v1.Action;
import io.bolt.v1.AgentInfo;
import io.bolt.v1.ExecuteRequest;
import io.bolt.v1.ExecuteResponse;
import io.bolt.v1.Execution;
import io.bolt.v1.HealthResponse;
import io.bolt.v1.KillResponse;
import io.bolt.v1.ListExecutionsRequest;
import io.bolt.v1.ListExecutionsResponse;
import io.bolt.v1.OutputChunk;
import io.bolt.v1.ServingStatus;
import io.bolt.v1.State;
import io.grpc.stub.StreamObserver;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** BoltClient against one real agent process with real certificates. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class AgentClientTest {
  static Path tls;
  static TestAgent agent;
  static BoltClient client;

  @BeforeAll
  static void startAgent() {
    TestAgent.assumeAgent();
    tls = TestAgent.initCerts("client");
    agent = TestAgent.start("i-java", "us-east-1a", "us-east-1", tls);
    client = agent.client();
  }

  @AfterAll
  static void stopAgent() {
    if (client != null) {
      client.close();
    }
    if (agent != null) {
      agent.close();
    }
  }

  @Test
  void agentInfoAndHealth() {
    AgentInfo info = client.agentInfo();
    assertEquals("i-java", info.getInstance().getInstanceId());
    assertEquals("scenario", info.getInstance().getApp());
    assertEquals("us-east-1a", info.getInstance().getAvailabilityZone());
    assertEquals("us-east-1", info.getInstance().getRegion());
    assertTrue(info.getPacksList().stream().anyMatch(p -> p.getName().equals("bolt-test")), info.toString());
    HealthResponse h = client.health();
    assertNotEquals(ServingStatus.SERVING_STATUS_NOT_SERVING, h.getStatus(), h.toString());
    assertEquals("i-java", client.agentInfoAsync().join().getInstance().getInstanceId());
    assertNotEquals(ServingStatus.SERVING_STATUS_UNSPECIFIED, client.healthAsync().join().getStatus());
  }

  @Test
  void listActions() {
    List<Action> all = client.listActions();
    Action echo = all.stream().filter(a -> a.getPack().equals("bolt-test") && a.getName().equals("echo"))
        .findFirst().orElseThrow();
    assertTrue(echo.getReadOnly());
    assertEquals(List.of("msg", "count", "loud", "color"), echo.getParamsList().stream().map(p -> p.getName()).toList());
    assertEquals("1.0.0", echo.getPackVersion());
    assertTrue(client.listActions("bolt-test").stream().allMatch(a -> a.getPack().equals("bolt-test")));
    assertEquals(all.size(), client.listActionsAsync("").join().size());
  }

  @Test
  void runEchoesArgumentsAsArgvAndEnvironment() {
    RunResult r = client.run("bolt-test", "echo", Map.of("msg", "hello world", "color", "red"));
    assertEquals(State.STATE_SUCCEEDED, r.state(), r.execution().toString());
    assertEquals(0, r.execution().getExitCode());
    String out = r.stdoutText();
    assertTrue(out.contains("argv:--msg=hello world"), out);
    assertTrue(out.contains("env:BOLT_ARG_MSG=hello world"), out);
    assertTrue(out.contains("env:BOLT_EXECUTION_ID=" + r.executionId()), out);
    assertEquals("1", r.execution().getArgsMap().get("count"), "defaults applied");
    assertFalse(r.execution().getCaller().isEmpty(), "caller identity recorded");
  }

  @Test
  void failingActionReportsExitCodeAndStderr() {
    RunResult r = client.run("bolt-test", "fail", Map.of("code", "3"));
    assertEquals(State.STATE_FAILED, r.state());
    assertEquals(3, r.execution().getExitCode());
    assertTrue(r.stderrText().contains("failing with 3"), r.stderrText());

    List<OutputChunk> seen = new java.util.concurrent.CopyOnWriteArrayList<>();
    RunResult a = client.runAsync(ExecuteRequest.newBuilder().setPack("bolt-test").setAction("fail")
        .putArgs("code", "4").build(), seen::add, 1 << 20).join();
    assertEquals(4, a.execution().getExitCode());
    assertTrue(a.stderrText().contains("failing with 4"));
    assertTrue(seen.get(seen.size() - 1).getEnd());
  }

  @Test
  void refusedFieldsAreNamedInStructuredDetails() {
    BoltException bad = assertThrows(BoltException.InvalidArgumentException.class,
        () -> client.execute("bolt-test", "echo", Map.of("msg", "x", "count", "many")));
    assertEquals(List.of("args.count"), bad.fieldViolations().stream().map(BoltException.FieldViolation::field).toList());
    assertTrue(bad.fieldViolations().get(0).description().contains("count"), bad.fieldViolations().toString());
    BoltException pack = assertThrows(BoltException.InvalidArgumentException.class,
        () -> client.execute("Bad_Pack", "echo", Map.of()));
    assertEquals("pack", pack.fieldViolations().get(0).field());
    BoltException missing = assertThrows(BoltException.NotFoundException.class,
        () -> client.execute("no-such-pack", "echo", Map.of()));
    assertEquals(List.of(), missing.fieldViolations());
  }

  @Test
  void refusedCallsAreTypedExceptions() {
    assertThrows(BoltException.InvalidArgumentException.class,
        () -> client.execute("bolt-test", "echo", Map.of("msg", "x", "count", "0")));
    assertThrows(BoltException.InvalidArgumentException.class,
        () -> client.execute("bolt-test", "echo", Map.of()));
    assertThrows(BoltException.InvalidArgumentException.class,
        () -> client.execute("bolt-test", "echo", Map.of("msg", "x", "color", "purple")));
    assertThrows(BoltException.NotFoundException.class,
        () -> client.execute("bolt-test", "no-such-action", Map.of()));
    assertThrows(BoltException.NotFoundException.class,
        () -> client.execute("no-such-pack", "echo", Map.of("msg", "x")));
    String id = client.execute("bolt-test", "noop", Map.of()).getExecutionId();
    String unknown = id.substring(0, id.length() - 4) + (id.endsWith("0000") ? "1111" : "0000");
    assertThrows(BoltException.NotFoundException.class, () -> client.getExecution(unknown));
    CompletableFuture<Execution> f = client.getExecutionAsync(unknown);
    Exception e = assertThrows(Exception.class, f::join);
    assertInstanceOf(BoltException.NotFoundException.class, e.getCause());
  }

  @Test
  void idempotencyKeyReturnsTheFirstExecution() {
    String key = "java-" + UUID.randomUUID();
    ExecuteRequest req = ExecuteRequest.newBuilder().setPack("bolt-test").setAction("echo")
        .putArgs("msg", "once").setIdempotencyKey(key).build();
    ExecuteResponse first = client.execute(req);
    ExecuteResponse second = client.execute(req);
    assertEquals(first.getExecutionId(), second.getExecutionId());
    assertFalse(first.getDeduplicated());
    assertTrue(second.getDeduplicated());
    assertThrows(BoltException.AlreadyExistsException.class,
        () -> client.execute(req.toBuilder().putArgs("msg", "twice").build()));
    assertEquals(key, client.waitFor(first.getExecutionId(), Duration.ofSeconds(20)).getIdempotencyKey());
  }

  @Test
  void liveTailOfARunningAction() {
    ExecuteResponse started = client.execute("bolt-test", "sleep", Map.of("ticks", "4", "interval", "0.4"));
    StringBuilder text = new StringBuilder();
    boolean sawLiveChunk = false;
    Execution last = null;
    long expectedOffset = 0;
    try (OutputTail tail = client.tail(started.getExecutionId())) {
      while (tail.hasNext()) {
        OutputChunk c = tail.next();
        if (c.getEnd()) {
          last = c.getExecution();
          assertTrue(c.getData().isEmpty());
          continue;
        }
        assertEquals(expectedOffset, c.getOffset(), "offsets are contiguous");
        expectedOffset += c.getData().size();
        text.append(c.getData().toStringUtf8());
        if (text.toString().contains("tick 1") && !sawLiveChunk) {
          // The first tick arrives while the action still runs.
          sawLiveChunk = !Executions.isFinal(client.getExecution(started.getExecutionId()));
        }
      }
      assertEquals(last, tail.finalExecution().orElse(null));
    }
    assertTrue(sawLiveChunk, "output streamed while the action was running");
    assertEquals(State.STATE_SUCCEEDED, last.getState());
    assertEquals("tick 1\ntick 2\ntick 3\ntick 4\ndone\n", text.toString());

    // After the end, from an offset, without follow.
    StringBuilder rest = new StringBuilder();
    try (OutputTail tail = client.tail(started.getExecutionId(), 7, false)) {
      tail.forEachRemaining(c -> rest.append(c.getData().toStringUtf8()));
    }
    assertEquals("tick 2\ntick 3\ntick 4\ndone\n", rest.toString());
  }

  @Test
  void observerTail() throws Exception {
    ExecuteResponse started = client.execute("bolt-test", "sleep", Map.of("ticks", "3", "interval", "0.2"));
    StringBuilder text = new StringBuilder();
    CountDownLatch completed = new CountDownLatch(1);
    OutputSubscription sub = client.tail(started.getExecutionId(), 0, true, new StreamObserver<>() {
      @Override
      public void onNext(OutputChunk c) {
        synchronized (text) {
          text.append(c.getData().toStringUtf8());
        }
      }

      @Override
      public void onError(Throwable t) {}

      @Override
      public void onCompleted() {
        completed.countDown();
      }
    });
    Execution end = sub.completion().toCompletableFuture().get(20, TimeUnit.SECONDS);
    assertTrue(completed.await(5, TimeUnit.SECONDS));
    assertEquals(State.STATE_SUCCEEDED, end.getState());
    synchronized (text) {
      assertEquals("tick 1\ntick 2\ntick 3\ndone\n", text.toString());
    }
  }

  @Test
  void observerTailCanBeCancelled() throws Exception {
    String id = client.execute("bolt-test", "sleep", Map.of("ticks", "600", "interval", "0.05")).getExecutionId();
    CountDownLatch first = new CountDownLatch(1);
    java.util.concurrent.atomic.AtomicInteger afterClose = new java.util.concurrent.atomic.AtomicInteger();
    java.util.concurrent.atomic.AtomicBoolean closed = new java.util.concurrent.atomic.AtomicBoolean();
    OutputSubscription sub = client.tail(id, 0, true, new StreamObserver<>() {
      @Override
      public void onNext(OutputChunk c) {
        if (closed.get()) {
          afterClose.incrementAndGet();
        }
        first.countDown();
      }

      @Override
      public void onError(Throwable t) {}

      @Override
      public void onCompleted() {}
    });
    assertTrue(first.await(10, TimeUnit.SECONDS));
    closed.set(true);
    sub.close();
    assertTrue(sub.completion().toCompletableFuture().isCancelled());
    Thread.sleep(300);
    assertTrue(afterClose.get() <= 1, "at most one chunk in flight after close: " + afterClose.get());
    client.kill(id);
    assertEquals(State.STATE_KILLED, client.waitFor(id, Duration.ofSeconds(20)).getState());
  }

  @Test
  void killEndsARunningAction() {
    ExecuteResponse started = client.executeAsync(ExecuteRequest.newBuilder().setPack("bolt-test")
        .setAction("sleep").putArgs("ticks", "600").putArgs("interval", "0.1").build()).join();
    try (OutputTail tail = client.tail(started.getExecutionId())) {
      assertTrue(tail.hasNext(), "some output before the kill");
    }
    KillResponse k = client.kill(started.getExecutionId(), Duration.ofSeconds(2));
    assertFalse(k.getAlreadyEnded());
    Execution e = client.waitForAsync(started.getExecutionId(), Duration.ofSeconds(20)).join();
    assertEquals(State.STATE_KILLED, e.getState());
    assertFalse(e.getKilledBy().isEmpty());
    assertTrue(client.kill(started.getExecutionId()).getAlreadyEnded(), "killing a finished execution is fine");
  }

  @Test
  void historyPagesNewestFirst() {
    for (int i = 0; i < 3; i++) {
      client.run("bolt-test", "noop", Map.of());
    }
    ListExecutionsResponse page = client.listExecutions(
        ListExecutionsRequest.newBuilder().setPageSize(2).setAction("noop").build());
    assertEquals(2, page.getExecutionsCount());
    assertFalse(page.getNextPageToken().isEmpty());
    List<Execution> all = client.history(ListExecutionsRequest.newBuilder().setPageSize(2).setAction("noop").build())
        .toList();
    assertTrue(all.size() >= 3);
    assertTrue(all.stream().allMatch(e -> e.getAction().equals("noop")));
    for (int i = 1; i < all.size(); i++) {
      assertTrue(all.get(i - 1).getExecutionId().compareTo(all.get(i).getExecutionId()) > 0, "newest first");
    }
    assertEquals(all.size(), all.stream().map(Execution::getExecutionId).distinct().count());
  }

  @Test
  void tailResumesAcrossAnAgentRestart() throws Exception {
    TestAgent own = TestAgent.start("i-restart", "us-east-1b", "us-east-1", tls);
    try (BoltClient c = own.client()) {
      String id = c.execute("bolt-test", "sleep", Map.of("ticks", "8", "interval", "0.25")).getExecutionId();
      StringBuilder text = new StringBuilder();
      Execution[] last = new Execution[1];
      Thread follower = new Thread(() -> {
        try (OutputTail tail = c.tail(id)) {
          tail.forEachRemaining(ch -> {
            if (ch.getEnd()) {
              last[0] = ch.getExecution();
            } else {
              synchronized (text) {
                text.append(ch.getData().toStringUtf8());
              }
            }
          });
        }
      });
      follower.start();
      Thread.sleep(600);
      own.restart(); // same port; the action goes on; the tail reconnects from its offset
      follower.join(30_000);
      assertFalse(follower.isAlive());
      assertEquals(State.STATE_SUCCEEDED, last[0].getState(), own.logText());
      synchronized (text) {
        assertEquals("tick 1\ntick 2\ntick 3\ntick 4\ntick 5\ntick 6\ntick 7\ntick 8\ndone\n", text.toString());
      }
    } finally {
      own.close();
    }
  }

  // ------------------------------------------------------------------ mTLS failures

  @Test
  void noClientCertificateIsRefused() {
    try (BoltClient anonymous = BoltClient.newBuilder().target("127.0.0.1", agent.port())
        .trustCa(tls.resolve("ca.crt")).deadline(Duration.ofSeconds(5)).build()) {
      // The agent accepts the handshake without a client certificate and answers
      // UNAUTHENTICATED (the proto's contract for "no usable client certificate").
      BoltException e = assertThrows(BoltException.class, anonymous::health);
      assertInstanceOf(BoltException.UnauthenticatedException.class, e, e.toString());
      assertTrue(e.getMessage().contains("certificate"), e.getMessage());
      assertThrows(BoltException.UnauthenticatedException.class,
          () -> anonymous.execute("bolt-test", "noop", Map.of()));
    }
  }

  @Test
  void clientCertificateFromAnotherCaIsRefused() {
    Path other = TestAgent.initCerts("other");
    try (BoltClient stranger = BoltClient.newBuilder().target("127.0.0.1", agent.port())
        .trustCa(tls.resolve("ca.crt"))
        .keyManager(other.resolve("client.crt"), other.resolve("client.key"))
        .deadline(Duration.ofSeconds(5)).build()) {
      BoltException e = assertThrows(BoltException.class, stranger::health);
      assertInstanceOf(BoltException.TlsException.class, e, e.toString());
      assertOneLineTlsMessage(e, "127.0.0.1:" + agent.port());
    }
  }

  @Test
  void agentCertificateFromAnUntrustedCaIsRefused() {
    Path other = TestAgent.initCerts("untrusted");
    try (BoltClient wrongCa = BoltClient.newBuilder().target("127.0.0.1", agent.port())
        .trustCa(other.resolve("ca.crt"))
        .keyManager(tls.resolve("client.crt"), tls.resolve("client.key"))
        .deadline(Duration.ofSeconds(5)).build()) {
      BoltException e = assertThrows(BoltException.class, wrongCa::health);
      assertInstanceOf(BoltException.TlsException.class, e, e.toString());
      assertOneLineTlsMessage(e, "127.0.0.1:" + agent.port());
      // The verification failure itself, not grpc's "io exception".
      assertTrue(e.details().contains("PKIX") || e.details().contains("certif"), e.details());
    }
  }

  /** One line naming the agent, the TLS failure and what to check; no netty pipeline dump. */
  static void assertOneLineTlsMessage(BoltException e, String target) {
    String m = e.getMessage();
    assertEquals(target, e.target());
    assertEquals("Health", e.method());
    assertTrue(m.startsWith(target + ": Health failed: UNAVAILABLE: TLS handshake failed: "), m);
    assertFalse(m.contains("\n") || m.contains("\r"), m);
    assertFalse(m.toLowerCase(java.util.Locale.ROOT).contains("pipeline"), m);
    assertFalse(m.contains("io exception"), m);
    assertTrue(m.contains("signed by the configured CA"), m);
  }

  @Test
  void refusedPortIsUnavailableAndSaysSo() throws Exception {
    int port;
    try (java.net.ServerSocket s = new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
      port = s.getLocalPort(); // free once closed: nothing listens there
    }
    try (BoltClient nowhere = BoltClient.newBuilder().target("127.0.0.1", port).tlsDir(tls)
        .retryPolicy(new RetryPolicy(2, Duration.ofMillis(10), Duration.ofMillis(10)))
        .deadline(Duration.ofSeconds(5)).build()) {
      BoltException e = assertThrows(BoltException.UnavailableException.class, nowhere::health);
      assertFalse(e instanceof BoltException.TlsException, e.toString());
      assertTrue(RetryPolicy.retryable(e));
      assertTrue(e.getMessage().startsWith("127.0.0.1:" + port + ": Health failed: UNAVAILABLE: "), e.getMessage());
      assertTrue(e.getMessage().contains("Connection refused"), e.getMessage());
      assertFalse(e.getMessage().contains("io exception"), e.getMessage());
    }
  }

  @Test
  void hostNamedLikeATlsErrorIsStillJustUnreachable() {
    // Resolution fails; the name's words must not make it a TLS failure.
    java.util.logging.Logger resolver = java.util.logging.Logger.getLogger("io.grpc.internal.ManagedChannelImpl");
    java.util.logging.Level level = resolver.getLevel();
    resolver.setLevel(java.util.logging.Level.OFF); // grpc logs the expected resolution failure with a stack trace
    try (BoltClient nowhere = BoltClient.newBuilder().target("tls-handshake-alert.example:7443").tlsDir(tls)
        .retryPolicy(RetryPolicy.none()).deadline(Duration.ofSeconds(10)).build()) {
      BoltException e = assertThrows(BoltException.class, nowhere::health);
      assertEquals(BoltException.UnavailableException.class, e.getClass(), e.toString());
      assertEquals("tls-handshake-alert.example:7443", e.target());
      assertTrue(e.getMessage().startsWith("tls-handshake-alert.example:7443: Health failed: UNAVAILABLE: "),
          e.getMessage());
    } finally {
      resolver.setLevel(level);
    }
  }
}
