package io.bolt.client.inventory;

import java.util.List;

/**
 * A source of instances, asked on demand: Bolt keeps no catalogue of its own.
 * Each call returns the fleet as the source sees it now, in a stable order
 * (orchestration strategies follow inventory order).
 */
@FunctionalInterface
public interface InventoryProvider {
  List<InventoryInstance> instances();
}
