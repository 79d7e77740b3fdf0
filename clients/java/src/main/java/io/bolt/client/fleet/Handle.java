package io.bolt.client.fleet;

import io.bolt.client.BoltClient;
import io.bolt.client.BoltException;
import io.bolt.client.OutputTail;
import io.bolt.client.inventory.InventoryInstance;
import io.bolt.v1.Execution;
import io.bolt.v1.KillResponse;
import java.time.Duration;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;

/**
 * A submitted execution on one instance, to check back on later: status, wait,
 * tail, kill. The pair (instance, execution id) is all it holds, so a handle can
 * be rebuilt in another process with {@link Fleet#attach}.
 */
public final class Handle {
  private final InventoryInstance instance;
  private final BoltClient client;
  private final String executionId;
  private final BoltException error;
  private final String pack;
  private final String action;
  private final String idempotencyKey;
  private final String errorText;

  Handle(InventoryInstance instance, BoltClient client, String executionId, BoltException error, String pack,
      String action, String idempotencyKey) {
    this(instance, client, executionId, error, pack, action, idempotencyKey,
        error == null ? "" : error.getMessage());
  }

  private Handle(InventoryInstance instance, BoltClient client, String executionId, BoltException error, String pack,
      String action, String idempotencyKey, String errorText) {
    this.instance = instance;
    this.client = client;
    this.executionId = executionId == null ? "" : executionId;
    this.error = error;
    this.pack = pack == null ? "" : pack;
    this.action = action == null ? "" : action;
    this.idempotencyKey = idempotencyKey == null ? "" : idempotencyKey;
    this.errorText = errorText == null ? "" : errorText;
  }

  /** Rebuilds a handle from {@link #toJson()} (or the Python client's {@code Handle.to_dict}). */
  static Handle fromJson(com.google.gson.JsonObject o,
      java.util.function.Function<InventoryInstance, BoltClient> clients) {
    InventoryInstance instance = InventoryInstance.fromJson(o.get("instance"));
    String err = str(o, "error");
    String id = str(o, "execution_id");
    // The original error's type is not in the JSON; its text is kept as the details.
    BoltException e = id.isEmpty() ? new BoltException(io.grpc.Status.Code.UNKNOWN, instance.target(), "Execute",
        err.isEmpty() ? "not submitted" : err, null) : null;
    return new Handle(instance, clients.apply(instance), id, e, str(o, "pack"), str(o, "action"),
        str(o, "idempotency_key"), err);
  }

  private static String str(com.google.gson.JsonObject o, String k) {
    return o.has(k) && !o.get(k).isJsonNull() ? o.get(k).getAsString() : "";
  }

  /**
   * The JSON form shared with the Python client: instance, execution_id, pack,
   * action, idempotency_key, error. Store it; {@link Fleet#attach(String)} takes it back.
   */
  public com.google.gson.JsonObject toJson() {
    com.google.gson.JsonObject o = new com.google.gson.JsonObject();
    o.add("instance", instance.toJson());
    o.addProperty("execution_id", executionId);
    o.addProperty("pack", pack);
    o.addProperty("action", action);
    o.addProperty("idempotency_key", idempotencyKey);
    o.addProperty("error", errorText);
    return o;
  }

  public String pack() {
    return pack;
  }

  public String action() {
    return action;
  }

  public String idempotencyKey() {
    return idempotencyKey;
  }

  /** Why the submission failed, as first reported (kept as is across JSON); empty when it did not. */
  String errorText() {
    return errorText;
  }

  public InventoryInstance instance() {
    return instance;
  }

  /** Empty when the submission failed (see {@link #error()}). */
  public String executionId() {
    return executionId;
  }

  /** Why nothing was started on this instance, when so. */
  public Optional<BoltException> error() {
    return Optional.ofNullable(error);
  }

  public boolean submitted() {
    return error == null && !executionId.isEmpty();
  }

  /** The current record (GetExecution). */
  public Execution status() {
    requireSubmitted();
    return client.getExecution(executionId);
  }

  /** Blocks until the execution ends. */
  public Execution waitFor(Duration timeout) {
    requireSubmitted();
    return client.waitFor(executionId, timeout);
  }

  public CompletableFuture<Execution> waitForAsync(Duration timeout) {
    if (!submitted()) {
      return CompletableFuture.failedFuture(error != null ? error
          : new IllegalStateException("no execution on " + instance.id()));
    }
    return client.waitForAsync(executionId, timeout);
  }

  /** All output from the start, following the execution to its end. */
  public OutputTail tail() {
    requireSubmitted();
    return client.tail(executionId);
  }

  public KillResponse kill() {
    requireSubmitted();
    return client.kill(executionId);
  }

  private void requireSubmitted() {
    if (!submitted()) {
      if (error != null) {
        throw error;
      }
      throw new IllegalStateException("no execution on " + instance.id());
    }
  }

  @Override
  public String toString() {
    return instance.id() + "@" + instance.target() + ":" + (submitted() ? executionId : "error " + error);
  }
}
