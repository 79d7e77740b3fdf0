package io.bolt.client.fleet;

import io.bolt.client.inventory.InventoryInstance;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;

/**
 * What every instance of a rollout runs: {@code pack/action} with arguments, and
 * optionally arguments that differ per instance (merged over the common ones).
 */
public record Task(String pack, String action, Map<String, String> args,
    Map<String, Map<String, String>> argsByInstance) {

  public Task {
    Objects.requireNonNull(pack, "pack");
    Objects.requireNonNull(action, "action");
    args = Map.copyOf(args == null ? Map.of() : args);
    argsByInstance = Map.copyOf(argsByInstance == null ? Map.of() : argsByInstance);
  }

  public static Task of(String pack, String action, Map<String, String> args) {
    return new Task(pack, action, args, Map.of());
  }

  /** A copy where instance {@code instanceId} also gets {@code extra} (overriding common args). */
  public Task withArgsFor(String instanceId, Map<String, String> extra) {
    Map<String, Map<String, String>> m = new LinkedHashMap<>(argsByInstance);
    m.put(instanceId, Map.copyOf(extra));
    return new Task(pack, action, args, m);
  }

  /** The arguments sent to one instance. */
  public Map<String, String> argsFor(InventoryInstance instance) {
    Map<String, String> m = new LinkedHashMap<>(args);
    m.putAll(argsByInstance.getOrDefault(instance.id(), Map.of()));
    return m;
  }

  @Override
  public String toString() {
    return pack + "/" + action + " " + args;
  }
}
