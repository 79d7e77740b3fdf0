package io.bolt.client.fleet;

import io.bolt.client.inventory.InventoryInstance;
import java.util.List;

/**
 * Progress of a rollout, for displays. Called from the rollout's threads: keep it
 * quick and thread-safe. Every method has an empty default.
 */
public interface FleetListener {
  /** A group starts: its index, label ({@link Strategy#label}) and members. */
  default void groupStarted(int index, String label, List<InventoryInstance> members) {}

  /** The instance's first call (Health or Execute) is about to be sent. */
  default void instanceStarted(InventoryInstance instance) {}

  /** The instance has its final report line (also called for SKIPPED instances). */
  default void instanceFinished(InstanceResult result) {}

  /** The failure budget was exceeded: no more instances start. */
  default void stopped(int errors, int allowed) {}
}
