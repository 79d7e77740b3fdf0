package io.bolt.client;

import com.google.common.util.concurrent.FutureCallback;
import com.google.common.util.concurrent.Futures;
import com.google.common.util.concurrent.ListenableFuture;
import com.google.common.util.concurrent.MoreExecutors;
import io.bolt.v1.Action;
import io.bolt.v1.AgentInfo;
import io.bolt.v1.BoltGrpc;
import io.bolt.v1.ExecuteRequest;
import io.bolt.v1.ExecuteResponse;
import io.bolt.v1.Execution;
import io.bolt.v1.GetAgentInfoRequest;
import io.bolt.v1.GetExecutionRequest;
import io.bolt.v1.HealthRequest;
import io.bolt.v1.HealthResponse;
import io.bolt.v1.KillRequest;
import io.bolt.v1.KillResponse;
import io.bolt.v1.ListActionsRequest;
import io.bolt.v1.ListExecutionsRequest;
import io.bolt.v1.ListExecutionsResponse;
import io.bolt.v1.OutputChunk;
import io.bolt.v1.StreamOutputRequest;
import io.grpc.Channel;
import io.grpc.ChannelCredentials;
import io.grpc.Grpc;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.TlsChannelCredentials;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.Objects;
import java.util.Spliterator;
import java.util.Spliterators;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.function.Supplier;
import java.util.stream.Stream;
import java.util.stream.StreamSupport;

/**
 * A client of one Bolt agent.
 *
 * <p>Build one with {@link #newBuilder()} (mutual TLS from PEM files; the client
 * then owns its channel and {@link #close()} shuts it down), or wrap a channel
 * you own with {@link #BoltClient(Channel)}.
 *
 * <p>Every RPC has a blocking form and a {@code ...Async} form returning a
 * {@link CompletableFuture}. Each call gets its own deadline ({@code
 * withDeadlineAfter}, the builder's {@link Builder#deadline}); a following
 * output stream has none unless asked. Failures are unchecked {@link
 * BoltException}s. Idempotent calls (everything but Kill's signal, which is
 * harmless to repeat too, and Execute, which is made idempotent by its key) are
 * retried on UNAVAILABLE according to the {@link RetryPolicy}.
 */
public final class BoltClient implements AutoCloseable {
  /** Default per-call deadline. */
  public static final Duration DEFAULT_DEADLINE = Duration.ofSeconds(30);
  /** Default port of an agent. */
  public static final int DEFAULT_PORT = 7443;

  private final Channel channel;
  private final ManagedChannel owned;
  private final Duration deadline;
  private final RetryPolicy retry;
  private final BoltGrpc.BoltBlockingStub blocking;
  private final BoltGrpc.BoltFutureStub future;
  private final BoltGrpc.BoltStub async;
  private final String target;

  /** Wraps a channel the caller owns (tests, custom transports); close() leaves it open. */
  public BoltClient(Channel channel) {
    this(channel, DEFAULT_DEADLINE, RetryPolicy.defaults());
  }

  public BoltClient(Channel channel, Duration deadline, RetryPolicy retry) {
    this(channel, null, Objects.requireNonNull(channel, "channel").authority(), deadline, retry);
  }

  private BoltClient(Channel channel, ManagedChannel owned, String target, Duration deadline, RetryPolicy retry) {
    this.channel = Objects.requireNonNull(channel, "channel");
    this.owned = owned;
    this.deadline = Objects.requireNonNull(deadline, "deadline");
    this.retry = Objects.requireNonNull(retry, "retry");
    this.blocking = BoltGrpc.newBlockingStub(channel);
    this.future = BoltGrpc.newFutureStub(channel);
    this.async = BoltGrpc.newStub(channel);
    this.target = target;
  }

  public static Builder newBuilder() {
    return new Builder();
  }

  /**
   * The agent this client talks to: "host:port" as dialled (the channel's authority
   * for a channel passed in). Every {@link BoltException} of this client names it.
   */
  public String target() {
    return target;
  }

  public Duration deadline() {
    return deadline;
  }

  /**
   * A client on the same channel with another per-call deadline (for one slow
   * call, say). Closing the copy leaves the channel open: close the original.
   */
  public BoltClient withDeadline(Duration deadline) {
    return new BoltClient(channel, null, target, deadline, retry);
  }

  /** A client on the same channel with another retry policy (same caveat as withDeadline). */
  public BoltClient withRetryPolicy(RetryPolicy retry) {
    return new BoltClient(channel, null, target, deadline, retry);
  }

  // ------------------------------------------------------------------ ListActions

  public List<Action> listActions() {
    return listActions("");
  }

  /** The actions of one pack, or of every pack when {@code pack} is empty. */
  public List<Action> listActions(String pack) {
    ListActionsRequest req = ListActionsRequest.newBuilder().setPack(pack).build();
    return call("ListActions", true, () -> blocking().listActions(req)).getActionsList();
  }

  public CompletableFuture<List<Action>> listActionsAsync(String pack) {
    ListActionsRequest req = ListActionsRequest.newBuilder().setPack(pack).build();
    return callAsync("ListActions", true, () -> future().listActions(req)).thenApply(r -> r.getActionsList());
  }

  // ------------------------------------------------------------------ Execute

  /** Starts {@code pack/action} with the arguments; returns at once. */
  public ExecuteResponse execute(String pack, String action, Map<String, String> args) {
    return execute(ExecuteRequest.newBuilder().setPack(pack).setAction(action).putAllArgs(args).build());
  }

  /**
   * Starts an action and returns its execution id at once. A request without an
   * idempotency key gets a fresh one, so that retries after a transport failure
   * return the first execution instead of starting a second.
   */
  public ExecuteResponse execute(ExecuteRequest request) {
    ExecuteRequest req = withKey(request);
    return call("Execute", true, () -> blocking().execute(req));
  }

  public CompletableFuture<ExecuteResponse> executeAsync(String pack, String action, Map<String, String> args) {
    return executeAsync(ExecuteRequest.newBuilder().setPack(pack).setAction(action).putAllArgs(args).build());
  }

  public CompletableFuture<ExecuteResponse> executeAsync(ExecuteRequest request) {
    ExecuteRequest req = withKey(request);
    return callAsync("Execute", true, () -> future().execute(req));
  }

  private static ExecuteRequest withKey(ExecuteRequest request) {
    if (!request.getIdempotencyKey().isEmpty()) {
      return request;
    }
    return request.toBuilder().setIdempotencyKey(UUID.randomUUID().toString()).build();
  }

  // ------------------------------------------------------------------ GetExecution

  public Execution getExecution(String executionId) {
    GetExecutionRequest req = GetExecutionRequest.newBuilder().setExecutionId(executionId).build();
    return call("GetExecution", true, () -> blocking().getExecution(req));
  }

  public CompletableFuture<Execution> getExecutionAsync(String executionId) {
    GetExecutionRequest req = GetExecutionRequest.newBuilder().setExecutionId(executionId).build();
    return callAsync("GetExecution", true, () -> future().getExecution(req));
  }

  // ------------------------------------------------------------------ ListExecutions

  /** One page of history, newest first. */
  public ListExecutionsResponse listExecutions(ListExecutionsRequest request) {
    return call("ListExecutions", true, () -> blocking().listExecutions(request));
  }

  public CompletableFuture<ListExecutionsResponse> listExecutionsAsync(ListExecutionsRequest request) {
    return callAsync("ListExecutions", true, () -> future().listExecutions(request));
  }

  /** Every execution matching the filter, newest first, fetching pages lazily. */
  public Stream<Execution> history(ListExecutionsRequest filter) {
    Iterator<Execution> it = new Iterator<>() {
      private Iterator<Execution> page = List.<Execution>of().iterator();
      private String token = filter.getPageToken();
      private boolean last = false;

      @Override
      public boolean hasNext() {
        while (!page.hasNext() && !last) {
          ListExecutionsResponse r = listExecutions(filter.toBuilder().setPageToken(token).build());
          page = r.getExecutionsList().iterator();
          token = r.getNextPageToken();
          last = token.isEmpty();
        }
        return page.hasNext();
      }

      @Override
      public Execution next() {
        if (!hasNext()) {
          throw new NoSuchElementException();
        }
        return page.next();
      }
    };
    return StreamSupport.stream(Spliterators.spliteratorUnknownSize(it, Spliterator.ORDERED), false);
  }

  // ------------------------------------------------------------------ StreamOutput

  /**
   * Output of an execution from {@code offset}, as a live iterator. With {@code
   * follow} it blocks for new output until the execution ends; its last chunk then
   * has {@code end=true} and the final record. A dropped connection is resumed
   * from the next offset. Close it to stop early.
   */
  public OutputTail tail(String executionId, long offset, boolean follow) {
    return new OutputTail(this, executionId, offset, follow);
  }

  /** All output of an execution, following it until it ends. */
  public OutputTail tail(String executionId) {
    return tail(executionId, 0, true);
  }

  /**
   * Output delivered to an observer on gRPC's threads. Errors arrive as {@link
   * BoltException}s in {@code onError}. The returned handle cancels the stream.
   */
  public OutputSubscription tail(String executionId, long offset, boolean follow,
      io.grpc.stub.StreamObserver<OutputChunk> observer) {
    return OutputSubscription.start(this, executionId, offset, follow, observer);
  }

  // ------------------------------------------------------------------ Kill

  public KillResponse kill(String executionId) {
    return kill(executionId, null);
  }

  /** SIGTERM to the execution's process tree, SIGKILL after {@code grace} (null: the agent's default). */
  public KillResponse kill(String executionId, Duration grace) {
    KillRequest req = killRequest(executionId, grace);
    return call("Kill", true, () -> blocking().kill(req));
  }

  public CompletableFuture<KillResponse> killAsync(String executionId) {
    return killAsync(executionId, null);
  }

  public CompletableFuture<KillResponse> killAsync(String executionId, Duration grace) {
    KillRequest req = killRequest(executionId, grace);
    return callAsync("Kill", true, () -> future().kill(req));
  }

  private static KillRequest killRequest(String executionId, Duration grace) {
    KillRequest.Builder b = KillRequest.newBuilder().setExecutionId(executionId);
    if (grace != null) {
      b.setGrace(Executions.toProto(grace));
    }
    return b.build();
  }

  // ------------------------------------------------------------------ Health, GetAgentInfo

  public HealthResponse health() {
    return call("Health", true, () -> blocking().health(HealthRequest.getDefaultInstance()));
  }

  public CompletableFuture<HealthResponse> healthAsync() {
    return callAsync("Health", true, () -> future().health(HealthRequest.getDefaultInstance()));
  }

  public AgentInfo agentInfo() {
    return call("GetAgentInfo", true, () -> blocking().getAgentInfo(GetAgentInfoRequest.getDefaultInstance()));
  }

  public CompletableFuture<AgentInfo> agentInfoAsync() {
    return callAsync("GetAgentInfo", true, () -> future().getAgentInfo(GetAgentInfoRequest.getDefaultInstance()));
  }

  // ------------------------------------------------------------------ compositions

  /**
   * Waits until the execution ends and returns its final record, polling
   * GetExecution (which survives agent restarts). Throws {@link
   * BoltException.DeadlineExceededException} when it is still live after {@code timeout}.
   */
  public Execution waitFor(String executionId, Duration timeout) {
    Instant until = Instant.now().plus(timeout);
    long sleepMs = 20;
    while (true) {
      Execution e = getExecution(executionId);
      if (Executions.isFinal(e)) {
        return e;
      }
      if (Instant.now().isAfter(until)) {
        throw stillLive(e, timeout);
      }
      sleep(Duration.ofMillis(sleepMs), "GetExecution");
      sleepMs = Math.min(500, sleepMs * 2);
    }
  }

  /** {@link #waitFor} without blocking a thread: polls on a shared timer. */
  public CompletableFuture<Execution> waitForAsync(String executionId, Duration timeout) {
    CompletableFuture<Execution> result = new CompletableFuture<>();
    pollAsync(executionId, Instant.now().plus(timeout), timeout, 20, result);
    return result;
  }

  private void pollAsync(String executionId, Instant until, Duration timeout, long delayMs,
      CompletableFuture<Execution> result) {
    getExecutionAsync(executionId).whenComplete((e, err) -> {
      if (err != null) {
        result.completeExceptionally(Errors.from(err, target, "GetExecution"));
      } else if (Executions.isFinal(e)) {
        result.complete(e);
      } else if (Instant.now().isAfter(until)) {
        result.completeExceptionally(stillLive(e, timeout));
      } else {
        Timers.SCHEDULER.schedule(
            () -> pollAsync(executionId, until, timeout, Math.min(500, delayMs * 2), result),
            delayMs, TimeUnit.MILLISECONDS);
      }
    });
  }

  /** waitFor's timeout: the last GetExecution still found the execution live. */
  private BoltException stillLive(Execution e, Duration timeout) {
    return new BoltException.DeadlineExceededException(target, "GetExecution",
        "execution " + e.getExecutionId() + " still " + Executions.name(e.getState()) + " after " + timeout, null);
  }

  /** Execute, follow the output to the end, and return the final record with the output. */
  public RunResult run(String pack, String action, Map<String, String> args) {
    return run(ExecuteRequest.newBuilder().setPack(pack).setAction(action).putAllArgs(args).build(),
        null, 1 << 20);
  }

  /**
   * Execute, follow the output (each chunk also goes to {@code onChunk} when not
   * null, as it arrives) and return the final record with up to {@code maxOutputBytes}
   * of each stream.
   */
  public RunResult run(ExecuteRequest request, Consumer<OutputChunk> onChunk, int maxOutputBytes) {
    ExecuteResponse started = execute(request);
    Capture capture = new Capture(maxOutputBytes);
    Execution last = null;
    try (OutputTail tail = tail(started.getExecutionId())) {
      while (tail.hasNext()) {
        OutputChunk c = tail.next();
        if (onChunk != null) {
          onChunk.accept(c);
        }
        if (c.getEnd()) {
          last = c.getExecution();
        }
        capture.add(c);
      }
    }
    if (last == null || !Executions.isFinal(last)) {
      last = waitFor(started.getExecutionId(), Duration.ofHours(24));
    }
    return capture.result(last);
  }

  /**
   * {@link #run(ExecuteRequest, Consumer, int)} without blocking a thread: the output
   * is followed on gRPC's threads ({@code onChunk} is called there).
   */
  public CompletableFuture<RunResult> runAsync(ExecuteRequest request, Consumer<OutputChunk> onChunk,
      int maxOutputBytes) {
    return executeAsync(request).thenCompose(started -> {
      String id = started.getExecutionId();
      Capture capture = new Capture(maxOutputBytes);
      OutputSubscription sub = tail(id, 0, true, new io.grpc.stub.StreamObserver<OutputChunk>() {
        @Override
        public void onNext(OutputChunk c) {
          if (onChunk != null) {
            onChunk.accept(c);
          }
          capture.add(c);
        }

        @Override
        public void onError(Throwable t) {}

        @Override
        public void onCompleted() {}
      });
      return sub.completion().toCompletableFuture()
          .thenCompose(last -> last != null && Executions.isFinal(last) ? CompletableFuture.completedFuture(last)
              : waitForAsync(id, Duration.ofHours(24)))
          .thenApply(last -> capture.result(last));
    });
  }

  /** Output of one execution kept up to a cap per stream. */
  private static final class Capture {
    private final int max;
    private final ByteArrayOutputStream out = new ByteArrayOutputStream();
    private final ByteArrayOutputStream err = new ByteArrayOutputStream();
    private boolean truncated;

    Capture(int max) {
      this.max = max;
    }

    synchronized void add(OutputChunk c) {
      ByteArrayOutputStream dst = switch (c.getStream()) {
        case STREAM_STDERR -> err;
        case STREAM_STDOUT -> out;
        default -> null;
      };
      if (c.getEnd() || dst == null) {
        return;
      }
      int room = max - dst.size();
      int n = Math.min(Math.max(room, 0), c.getData().size());
      if (n < c.getData().size()) {
        truncated = true;
      }
      dst.write(c.getData().toByteArray(), 0, n);
    }

    synchronized RunResult result(Execution last) {
      return new RunResult(last, out.toByteArray(), err.toByteArray(), truncated);
    }
  }

  // ------------------------------------------------------------------ plumbing

  BoltGrpc.BoltBlockingStub blocking() {
    return blocking.withDeadlineAfter(deadline.toMillis(), TimeUnit.MILLISECONDS);
  }

  BoltGrpc.BoltFutureStub future() {
    return future.withDeadlineAfter(deadline.toMillis(), TimeUnit.MILLISECONDS);
  }

  /** Streaming stubs: no deadline unless the caller sets one on the stub. */
  BoltGrpc.BoltBlockingStub blockingStream() {
    return blocking;
  }

  BoltGrpc.BoltStub asyncStream() {
    return async;
  }

  RetryPolicy retryPolicy() {
    return retry;
  }

  /** One unary RPC ({@code method} as the proto names it, for errors), retried as the policy says. */
  private <T> T call(String method, boolean idempotent, Supplier<T> rpc) {
    int attempt = 1;
    while (true) {
      try {
        return rpc.get();
      } catch (RuntimeException e) {
        BoltException be = Errors.from(e, target, method);
        if (!idempotent || attempt >= retry.maxAttempts() || !RetryPolicy.retryable(be)) {
          throw be;
        }
        attempt++;
        sleep(retry.backoff(attempt), method);
      }
    }
  }

  private <T> CompletableFuture<T> callAsync(String method, boolean idempotent,
      Supplier<ListenableFuture<T>> rpc) {
    CompletableFuture<T> result = new CompletableFuture<>();
    attemptAsync(method, idempotent, rpc, 1, result);
    return result;
  }

  private <T> void attemptAsync(String method, boolean idempotent, Supplier<ListenableFuture<T>> rpc,
      int attempt, CompletableFuture<T> result) {
    ListenableFuture<T> f;
    try {
      f = rpc.get();
    } catch (RuntimeException e) {
      result.completeExceptionally(Errors.from(e, target, method));
      return;
    }
    Futures.addCallback(f, new FutureCallback<T>() {
      @Override
      public void onSuccess(T value) {
        result.complete(value);
      }

      @Override
      public void onFailure(Throwable t) {
        BoltException be = Errors.from(t, target, method);
        if (!idempotent || attempt >= retry.maxAttempts() || !RetryPolicy.retryable(be)) {
          result.completeExceptionally(be);
          return;
        }
        Executor later = CompletableFuture.delayedExecutor(
            retry.backoff(attempt + 1).toMillis(), TimeUnit.MILLISECONDS);
        later.execute(() -> attemptAsync(method, idempotent, rpc, attempt + 1, result));
      }
    }, MoreExecutors.directExecutor());
  }

  /** Waits between attempts of {@code method}; an interrupt ends the call as CANCELLED. */
  void sleep(Duration d, String method) {
    try {
      Thread.sleep(d.toMillis());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new BoltException(io.grpc.Status.Code.CANCELLED, target, method, "interrupted", e);
    }
  }

  /** Shuts down the channel this client built (not one passed in), waiting up to 5 s. */
  @Override
  public void close() {
    if (owned == null) {
      return;
    }
    owned.shutdown();
    try {
      if (!owned.awaitTermination(5, TimeUnit.SECONDS)) {
        owned.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
      }
    } catch (InterruptedException e) {
      owned.shutdownNow();
      Thread.currentThread().interrupt();
    }
  }

  @Override
  public String toString() {
    return "BoltClient(" + target + ")";
  }

  // ================================================================== Builder

  /** Builds a client with its own mutual-TLS channel. */
  public static final class Builder {
    private String host;
    private int port = DEFAULT_PORT;
    private File ca;
    private File cert;
    private File key;
    private String authority;
    private Duration deadline = DEFAULT_DEADLINE;
    private RetryPolicy retry = RetryPolicy.defaults();
    private Duration keepAlive = Duration.ofSeconds(30);

    private Builder() {}

    public Builder target(String host, int port) {
      this.host = Objects.requireNonNull(host, "host");
      this.port = port;
      return this;
    }

    /** "host:port", "host" (port 7443) or "[v6]:port". */
    public Builder target(String hostPort) {
      HostPort hp = HostPort.parse(hostPort, DEFAULT_PORT);
      return target(hp.host(), hp.port());
    }

    /** PEM file of the CA that signed the agents' certificates. Without it, the JVM's default trust store. */
    public Builder trustCa(File caPem) {
      this.ca = caPem;
      return this;
    }

    public Builder trustCa(Path caPem) {
      return trustCa(caPem.toFile());
    }

    /** PEM certificate chain and PEM (PKCS#8) private key of this client. */
    public Builder keyManager(File certPem, File keyPem) {
      this.cert = certPem;
      this.key = keyPem;
      return this;
    }

    public Builder keyManager(Path certPem, Path keyPem) {
      return keyManager(certPem.toFile(), keyPem.toFile());
    }

    /** Reads ca.crt, client.crt and client.key from a folder made by {@code bolt-agent certs init}. */
    public Builder tlsDir(Path dir) {
      return trustCa(dir.resolve("ca.crt")).keyManager(dir.resolve("client.crt"), dir.resolve("client.key"));
    }

    /**
     * Name to check the agent's certificate against, when it differs from the
     * host dialled (e.g. dialling an IP whose certificate names a DNS name). Meant
     * for test certificates; production certificates should name what you dial.
     */
    public Builder overrideAuthority(String authority) {
      this.authority = authority;
      return this;
    }

    /** Deadline of each unary call (default 30 s). */
    public Builder deadline(Duration deadline) {
      this.deadline = Objects.requireNonNull(deadline);
      return this;
    }

    public Builder retryPolicy(RetryPolicy retry) {
      this.retry = Objects.requireNonNull(retry);
      return this;
    }

    public Builder keepAlive(Duration keepAlive) {
      this.keepAlive = keepAlive;
      return this;
    }

    public BoltClient build() {
      if (host == null) {
        throw new IllegalStateException("target(host, port) is required");
      }
      TlsChannelCredentials.Builder tls = TlsChannelCredentials.newBuilder();
      try {
        if (cert != null || key != null) {
          tls.keyManager(Objects.requireNonNull(cert, "cert"), Objects.requireNonNull(key, "key"));
        }
        if (ca != null) {
          tls.trustManager(ca);
        }
      } catch (IOException e) {
        throw new UncheckedIOException("cannot read TLS files: " + e.getMessage(), e);
      }
      ChannelCredentials creds = tls.build();
      ManagedChannelBuilder<?> b = Grpc.newChannelBuilderForAddress(host, port, creds);
      if (authority != null) {
        b.overrideAuthority(authority);
      }
      if (keepAlive != null) {
        b.keepAliveTime(keepAlive.toMillis(), TimeUnit.MILLISECONDS);
      }
      b.maxInboundMessageSize(64 << 20);
      ManagedChannel ch = b.build();
      return new BoltClient(ch, ch, new HostPort(host, port).toString(), deadline, retry);
    }
  }
}
