package io.bolt.client.fleet;

import io.bolt.client.BoltClient;
import io.bolt.client.BoltException;
import io.bolt.client.Errors;
import io.bolt.client.Executions;
import io.bolt.client.OutputSubscription;
import io.bolt.client.Timers;
import io.bolt.client.inventory.InventoryInstance;
import io.bolt.client.inventory.InventoryProvider;
import io.bolt.v1.ExecuteRequest;
import io.bolt.v1.Execution;
import io.bolt.v1.HealthResponse;
import io.bolt.v1.OutputChunk;
import io.bolt.v1.ServingStatus;
import io.grpc.stub.StreamObserver;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;

/**
 * Runs one action over many instances, talking to each agent directly.
 *
 * <p>{@link #run} is a rollout: instances are grouped by the {@link Strategy}
 * (one at a time, per zone, per region, or all together); a group starts only
 * after every execution of the previous group has ended; inside a group at most
 * {@code maxConcurrency} instances run at once, started in inventory order. Every
 * outcome other than SUCCEEDED and SKIPPED is an error; as soon as errors exceed
 * the {@link FailureBudget} no new instance starts, running ones finish, and the
 * rest are SKIPPED. Waiting costs no thread per instance: each running instance
 * is one following output stream.
 *
 * <p>{@link #submit} is fire-and-check-back: it starts the action everywhere and
 * returns {@link Handle}s; {@link #attach} rebuilds a handle from an execution id.
 *
 * <p>Each instance's Execute carries {@link #idempotencyKey(String, String)} of the
 * run id and the instance id: running again with the same run id re-attaches to
 * the executions already started instead of starting them twice. These rules are
 * shared with the Python client (integration/scenarios/README.md).
 *
 * <p>The fleet keeps one {@link BoltClient} per agent address; {@link #close()} closes them.
 */
public final class Fleet implements AutoCloseable {
  private final Function<InventoryInstance, BoltClient> connect;
  private final Map<String, BoltClient> clients = new ConcurrentHashMap<>();

  /** Clients come from {@code connect}, called once per agent address. */
  public Fleet(Function<InventoryInstance, BoltClient> connect) {
    this.connect = Objects.requireNonNull(connect);
  }

  /** Mutual TLS with the same client identity for every agent. */
  public static Fleet withTls(Path caPem, Path certPem, Path keyPem, Duration deadline) {
    return new Fleet(i -> BoltClient.newBuilder()
        .target(i.address(), i.port())
        .trustCa(caPem)
        .keyManager(certPem, keyPem)
        .deadline(deadline)
        .build());
  }

  /** {@link #withTls} from a folder with ca.crt, client.crt and client.key. */
  public static Fleet withTlsDir(Path dir) {
    return withTls(dir.resolve("ca.crt"), dir.resolve("client.crt"), dir.resolve("client.key"),
        BoltClient.DEFAULT_DEADLINE);
  }

  /** The client of one instance's agent (made on first use, then reused). */
  public BoltClient client(InventoryInstance instance) {
    return clients.computeIfAbsent(instance.target(), k -> connect.apply(instance));
  }

  // ================================================================== rollout

  public FleetReport run(InventoryProvider inventory, Task task, RolloutOptions options) {
    return run(inventory.instances(), task, options, null);
  }

  public FleetReport run(List<InventoryInstance> instances, Task task, RolloutOptions options) {
    return run(instances, task, options, null);
  }

  /** Runs the rollout under a new run id and blocks until it is over. */
  public FleetReport run(List<InventoryInstance> instances, Task task, RolloutOptions options, FleetListener listener) {
    return run(instances, task, options, listener, newRunId("fleet-"));
  }

  /**
   * Runs the rollout and blocks until it is over. The same {@code runId} (non-empty,
   * no ':') as an earlier run re-attaches to the executions that run started.
   */
  public FleetReport run(List<InventoryInstance> instances, Task task, RolloutOptions options, FleetListener listener,
      String runId) {
    checkRunId(runId);
    requireUniqueIds(instances);
    FleetListener l = listener == null ? new FleetListener() {} : listener;
    Instant t0 = Instant.now();
    int allowed = options.maxErrors().allowed(instances.size());
    AtomicInteger errors = new AtomicInteger();
    Map<String, InstanceResult> results = new ConcurrentHashMap<>();
    boolean stopped = false;
    List<List<InventoryInstance>> groups = options.strategy().groups(instances);
    for (int g = 0; g < groups.size() && !stopped; g++) {
      List<InventoryInstance> group = groups.get(g);
      l.groupStarted(g, options.strategy().label(group), group);
      Semaphore permits = new Semaphore(options.concurrency(group.size()));
      List<CompletableFuture<InstanceResult>> running = new ArrayList<>();
      for (InventoryInstance instance : group) {
        permits.acquireUninterruptibly();
        if (errors.get() > allowed) {
          stopped = true;
          permits.release();
          break;
        }
        l.instanceStarted(instance);
        running.add(runOne(instance, task, options, runId).whenComplete((r, err) -> {
          // Record before releasing the permit: the next start must see this error.
          InstanceResult res = r != null ? r
              : errorResult(instance, "", Errors.from(err, instance.target(), firstCall(options)), Duration.ZERO);
          results.put(instance.id(), res);
          if (res.outcome().isError()) {
            errors.incrementAndGet();
          }
          try {
            l.instanceFinished(res);
          } finally {
            permits.release();
          }
        }));
      }
      CompletableFuture.allOf(running.toArray(CompletableFuture[]::new)).handle((v, e) -> null).join();
      if (errors.get() > allowed) {
        stopped = true;
      }
    }
    if (stopped) {
      l.stopped(errors.get(), allowed);
    }
    List<InstanceResult> report = new ArrayList<>();
    for (InventoryInstance i : instances) {
      InstanceResult r = results.get(i.id());
      if (r == null) {
        r = InstanceResult.skipped(i);
        l.instanceFinished(r);
      }
      report.add(r);
    }
    return new FleetReport(runId, task, options, report, stopped, errors.get(), allowed,
        Duration.between(t0, Instant.now()));
  }

  /** One instance of a rollout: health gate, Execute, follow to the end. Never fails: errors are results. */
  CompletableFuture<InstanceResult> runOne(InventoryInstance instance, Task task, RolloutOptions o, String runId) {
    Instant t0 = Instant.now();
    BoltClient client;
    try {
      client = client(instance);
    } catch (RuntimeException e) {
      return CompletableFuture.completedFuture(
          errorResult(instance, "", Errors.from(e, instance.target(), firstCall(o)), since(t0)));
    }
    CompletableFuture<String> gate = !o.healthGate() ? CompletableFuture.completedFuture(null)
        : client.withDeadline(o.healthTimeout()).healthAsync().handle((h, err) -> {
          if (err != null) {
            return Errors.from(err, client.target(), "Health").getMessage(); // names the target and the Health call
          }
          return passesHealthGate(h) ? null : unhealthy(h);
        });
    return gate.thenCompose(unhealthy -> {
      if (unhealthy != null) {
        return CompletableFuture.completedFuture(
            new InstanceResult(instance, Outcome.UNHEALTHY, "", null, "", unhealthy, since(t0)));
      }
      ExecuteRequest.Builder req = ExecuteRequest.newBuilder()
          .setPack(task.pack())
          .setAction(task.action())
          .putAllArgs(task.argsFor(instance))
          .setIdempotencyKey(idempotencyKey(runId, instance.id()));
      if (o.instanceTimeout() != null) {
        req.setTimeout(Executions.toProto(o.instanceTimeout()));
      }
      return client.executeAsync(req.build())
          .thenCompose(resp -> follow(client, instance, resp.getExecutionId(), o, t0))
          .exceptionally(err -> errorResult(instance, "", Errors.from(err, client.target(), "Execute"), since(t0)));
    });
  }

  /** The first RPC sent for an instance, named by errors that happen before any is sent. */
  private static String firstCall(RolloutOptions o) {
    return o.healthGate() ? "Health" : "Execute";
  }

  /** Follows one execution's output to its end (keeping an excerpt), bounded by the instance timeout. */
  private CompletableFuture<InstanceResult> follow(BoltClient client, InventoryInstance instance, String executionId,
      RolloutOptions o, Instant t0) {
    CompletableFuture<InstanceResult> done = new CompletableFuture<>();
    java.util.concurrent.atomic.AtomicBoolean clientTimeout = new java.util.concurrent.atomic.AtomicBoolean();
    Excerpt excerpt = new Excerpt(o.excerptBytes());
    OutputSubscription sub = client.tail(executionId, 0, true, new StreamObserver<OutputChunk>() {
      @Override
      public void onNext(OutputChunk c) {
        if (!c.getEnd()) {
          excerpt.add(c.getData().toByteArray());
        }
      }

      @Override
      public void onError(Throwable t) {}

      @Override
      public void onCompleted() {}
    });
    sub.completion().whenComplete((exec, err) -> {
      if (clientTimeout.get()) {
        return; // the timeout below reports this instance
      }
      if (exec != null && Executions.isFinal(exec)) {
        done.complete(finished(instance, exec, excerpt, t0));
        return;
      }
      if (done.isDone()) {
        return;
      }
      // The stream ended without a final record: ask once more before calling it broken.
      client.getExecutionAsync(executionId).whenComplete((e2, err2) -> {
        if (e2 != null && Executions.isFinal(e2)) {
          done.complete(finished(instance, e2, excerpt, t0));
        } else {
          String why = err != null
              ? "output stream broken: " + Errors.from(err, client.target(), "StreamOutput").getMessage()
              : "output stream ended before the execution";
          done.complete(new InstanceResult(instance, Outcome.ERROR, executionId, e2, excerpt.text(), why,
              since(t0)));
        }
      });
    });
    if (o.instanceTimeout() != null) {
      // The agent ends the action TIMED_OUT; should no end be seen a grace period
      // later, the client kills it and reports TIMED_OUT itself (as the Python client).
      long ms = o.instanceTimeout().plus(o.timeoutGrace()).toMillis();
      Timers.SCHEDULER.schedule(() -> {
        if (done.isDone() || !clientTimeout.compareAndSet(false, true)) {
          return;
        }
        sub.close();
        String why = "no end within " + o.instanceTimeout() + " + " + o.timeoutGrace() + "; killed by the client";
        client.killAsync(executionId, null)
            .thenCompose(k -> client.waitForAsync(executionId,
                o.timeoutGrace().compareTo(Duration.ofSeconds(5)) > 0 ? o.timeoutGrace().plusSeconds(10)
                    : Duration.ofSeconds(15)))
            .whenComplete((e, err) -> {
              done.complete(new InstanceResult(instance, Outcome.TIMED_OUT, executionId, e, excerpt.text(),
                  err == null ? why : why + " (" + Errors.from(err, client.target(), "Kill").getMessage() + ")",
                  since(t0)));
            });
      }, ms, TimeUnit.MILLISECONDS);
    }
    return done;
  }

  private static InstanceResult finished(InventoryInstance instance, Execution e, Excerpt excerpt, Instant t0) {
    return new InstanceResult(instance, Outcome.of(e.getState()), e.getExecutionId(), e, excerpt.text(),
        e.getError(), since(t0));
  }

  private static InstanceResult errorResult(InventoryInstance instance, String executionId, BoltException e,
      Duration d) {
    return new InstanceResult(instance, Outcome.ERROR, executionId, null, "", e.getMessage(), d);
  }

  private static Duration since(Instant t0) {
    return Duration.between(t0, Instant.now());
  }

  /** SERVING and DEGRADED pass the health gate; NOT_SERVING and unknown statuses do not. */
  private static boolean passesHealthGate(HealthResponse h) {
    return h.getStatus() == ServingStatus.SERVING_STATUS_SERVING
        || h.getStatus() == ServingStatus.SERVING_STATUS_DEGRADED;
  }

  /** Why the health gate refused an agent, worded as the Python client does. */
  static String unhealthy(HealthResponse h) {
    // A status newer than this client reads as UNSPECIFIED, as in Python.
    String status = h.getStatus() == ServingStatus.UNRECOGNIZED ? "UNSPECIFIED"
        : h.getStatus().name().replace("SERVING_STATUS_", "");
    String problems = h.getProblemsList().isEmpty() ? "no problem listed" : String.join("; ", h.getProblemsList());
    return "agent " + status + ": " + problems;
  }

  /**
   * The Execute idempotency key of one instance of a run: {@code runId:instanceId},
   * or, when that is over 128 UTF-8 bytes (the agent's limit), {@code sha256:} and
   * the hex SHA-256 of it, so long keys stay distinct. Same run, same instance, same
   * key; the run id must be non-empty and hold no ':', so that no two (run,
   * instance) pairs share a key.
   */
  public static String idempotencyKey(String runId, String instanceId) {
    checkRunId(runId);
    byte[] key = (runId + ":" + instanceId).getBytes(StandardCharsets.UTF_8);
    if (key.length <= 128) {
      return new String(key, StandardCharsets.UTF_8);
    }
    try {
      return "sha256:" + HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(key));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  private static void checkRunId(String runId) {
    if (runId == null || runId.isEmpty() || runId.contains(":")) {
      throw new IllegalArgumentException("bad run id '" + runId + "': it must be non-empty and hold no ':'");
    }
  }

  private static String newRunId(String prefix) {
    return prefix + UUID.randomUUID().toString().replace("-", "").substring(0, 16);
  }

  private static void requireUniqueIds(List<InventoryInstance> instances) {
    Set<String> seen = new HashSet<>();
    for (InventoryInstance i : instances) {
      if (!seen.add(i.id())) {
        throw new IllegalArgumentException("inventory has duplicate instance id " + i.id());
      }
    }
  }

  // ================================================================== fire and check back

  /**
   * Starts the task on every instance (all at once, or {@code maxConcurrency} Execute
   * calls at a time) and returns one handle per instance, in inventory order,
   * without waiting for the executions. With the health gate, an unhealthy
   * instance's handle carries the error instead of an execution.
   */
  public List<Handle> submit(List<InventoryInstance> instances, Task task, RolloutOptions options) {
    return submit(instances, task, options, newRunId("submit-"));
  }

  /** {@link #submit(List, Task, RolloutOptions)}; the same {@code runId} twice returns the same executions. */
  public List<Handle> submit(List<InventoryInstance> instances, Task task, RolloutOptions options, String runId) {
    checkRunId(runId);
    requireUniqueIds(instances);
    // A percentage here is of all the instances: submit has no groups.
    Semaphore permits = new Semaphore(options.maxConcurrency() == null ? Integer.MAX_VALUE
        : options.maxConcurrency().limit(instances.size()));
    Map<String, CompletableFuture<Handle>> pending = new LinkedHashMap<>();
    for (InventoryInstance instance : instances) {
      permits.acquireUninterruptibly();
      CompletableFuture<Handle> f = submitOne(instance, task, options, runId);
      f.whenComplete((h, e) -> permits.release());
      pending.put(instance.id(), f);
    }
    List<Handle> out = new ArrayList<>();
    pending.values().forEach(f -> out.add(f.join()));
    return out;
  }

  private CompletableFuture<Handle> submitOne(InventoryInstance instance, Task task, RolloutOptions o, String runId) {
    BoltClient client;
    try {
      client = client(instance);
    } catch (RuntimeException e) {
      return CompletableFuture.completedFuture(new Handle(instance, null, "",
          Errors.from(e, instance.target(), firstCall(o)), task.pack(), task.action(), ""));
    }
    CompletableFuture<Void> gate = !o.healthGate() ? CompletableFuture.completedFuture(null)
        : client.withDeadline(o.healthTimeout()).healthAsync().thenAccept(h -> {
          if (!passesHealthGate(h)) {
            throw new BoltException(io.grpc.Status.Code.UNAVAILABLE, client.target(), "Health", unhealthy(h), null);
          }
        });
    String key = idempotencyKey(runId, instance.id());
    ExecuteRequest.Builder req = ExecuteRequest.newBuilder()
        .setPack(task.pack())
        .setAction(task.action())
        .putAllArgs(task.argsFor(instance))
        .setIdempotencyKey(key);
    if (o.instanceTimeout() != null) {
      req.setTimeout(Executions.toProto(o.instanceTimeout()));
    }
    return gate.thenCompose(v -> client.executeAsync(req.build()))
        .thenApply(r -> new Handle(instance, client, r.getExecutionId(), null, task.pack(), task.action(), key))
        .exceptionally(e -> new Handle(instance, client, "", Errors.from(e, client.target(), "Execute"), task.pack(),
            task.action(), key));
  }

  /** A handle on an execution started earlier, possibly by another process. */
  public Handle attach(InventoryInstance instance, String executionId) {
    return new Handle(instance, client(instance), executionId, null, "", "", "");
  }

  /** A handle from its JSON form ({@link Handle#toJson()}, or a Python client's handle). */
  public Handle attach(String handleJson) {
    return Handle.fromJson(com.google.gson.JsonParser.parseString(handleJson).getAsJsonObject(), this::client);
  }

  /**
   * Waits for every submitted handle (concurrently) and reports them like a
   * rollout; handles without an execution are ERROR.
   */
  public FleetReport collect(List<Handle> handles, Duration timeout) {
    Instant t0 = Instant.now();
    List<CompletableFuture<InstanceResult>> fs = new ArrayList<>();
    for (Handle h : handles) {
      if (!h.submitted()) {
        fs.add(CompletableFuture.completedFuture(new InstanceResult(h.instance(), Outcome.ERROR, "", null, "",
            h.errorText().isEmpty() ? "not submitted" : h.errorText(), Duration.ZERO)));
        continue;
      }
      fs.add(h.waitForAsync(timeout)
          .thenApply(e -> new InstanceResult(h.instance(), Outcome.of(e.getState()), e.getExecutionId(), e, "",
              e.getError(), since(t0)))
          .exceptionally(err -> errorResult(h.instance(), h.executionId(),
              Errors.from(err, h.instance().target(), "GetExecution"), since(t0))));
    }
    List<InstanceResult> results = fs.stream().map(CompletableFuture::join).toList();
    int errors = (int) results.stream().filter(r -> r.outcome().isError()).count();
    return new FleetReport("", null, null, results, false, errors, Integer.MAX_VALUE,
        Duration.between(t0, Instant.now()));
  }

  /** Closes every client this fleet made. */
  @Override
  public void close() {
    clients.values().forEach(BoltClient::close);
    clients.clear();
  }

  /**
   * The last {@code max} bytes of an output, thread-safe. After a cut the text starts
   * with {@link #MARK} and without the partial character the cut left (rules shared
   * with the Python client: integration/scenarios/README.md, "Output excerpt").
   */
  static final class Excerpt {
    static final String MARK = "…";

    private final int max;
    private byte[] buf = new byte[0];
    private boolean dropped;

    Excerpt(int max) {
      this.max = max;
    }

    synchronized void add(byte[] data) {
      if (max <= 0) {
        return;
      }
      int total = buf.length + data.length;
      if (total > max) {
        dropped = true;
      }
      int keep = Math.min(max, total);
      byte[] n = new byte[keep];
      int fromData = Math.min(keep, data.length);
      int fromBuf = keep - fromData;
      System.arraycopy(buf, buf.length - fromBuf, n, 0, fromBuf);
      System.arraycopy(data, data.length - fromData, n, fromBuf, fromData);
      buf = n;
    }

    synchronized String text() {
      if (!dropped) {
        return new String(buf, StandardCharsets.UTF_8);
      }
      // Skip the continuation bytes (10xxxxxx) of a character whose start was cut off,
      // so the excerpt never begins with a replacement character.
      int start = 0;
      while (start < buf.length && (buf[start] & 0xC0) == 0x80) {
        start++;
      }
      return MARK + new String(buf, start, buf.length - start, StandardCharsets.UTF_8);
    }
  }
}
