package io.bolt.client.fleet;

import io.bolt.client.inventory.InventoryInstance;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/** How a rollout walks the inventory. Groups run one after the other; see {@link #groups}. */
public enum Strategy {
  /** Every instance is its own group, in inventory order (the default). */
  ONE_AT_A_TIME("one-at-a-time"),
  /** One group per availability zone, zones in order of first appearance. */
  AZ("az"),
  /** One group per region, regions in order of first appearance. */
  REGION("region"),
  /** One group of everything. */
  PARALLEL("parallel");

  /** The label of the group of instances without a zone (AZ) or region (REGION). */
  public static final String UNKNOWN_LABEL = "(unknown)";

  /** Accepted spellings besides the wire names (the Python client has the same). */
  private static final Map<String, Strategy> ALIASES = Map.of(
      "serial", ONE_AT_A_TIME, "one", ONE_AT_A_TIME, "zone", AZ, "all", PARALLEL);

  private final String wireName;

  Strategy(String wireName) {
    this.wireName = wireName;
  }

  /** The name shared with the Python client and the scenario vectors. */
  public String wireName() {
    return wireName;
  }

  /**
   * Parses a wire name ("one-at-a-time", "az", "region", "parallel") or an alias
   * ("serial", "one", "zone", "all"), in any case, with "_" for "-" (so the enum
   * names too) and surrounding spaces ignored.
   */
  public static Strategy parse(String name) {
    String n = name.strip().toLowerCase(Locale.ROOT).replace('_', '-');
    for (Strategy s : values()) {
      if (s.wireName.equals(n)) {
        return s;
      }
    }
    Strategy alias = ALIASES.get(n);
    if (alias != null) {
      return alias;
    }
    throw new IllegalArgumentException("unknown strategy: '" + name
        + "' (one-at-a-time, az, region, parallel)");
  }

  /**
   * The ordered groups of this strategy; members keep inventory order. AZ and REGION
   * put the instances without a zone or region in one group, labelled {@link #UNKNOWN_LABEL}.
   */
  public List<List<InventoryInstance>> groups(List<InventoryInstance> inventory) {
    return switch (this) {
      case ONE_AT_A_TIME -> inventory.stream().map(List::of).toList();
      case AZ, REGION -> groupBy(inventory);
      case PARALLEL -> inventory.isEmpty() ? List.of() : List.of(List.copyOf(inventory));
    };
  }

  /**
   * The label of one of {@link #groups}: the instance id (ONE_AT_A_TIME), the zone
   * (AZ) or region (REGION), {@link #UNKNOWN_LABEL} when that is missing, or "all"
   * (PARALLEL). Shared with the Python client's {@code plan_groups}.
   */
  public String label(List<InventoryInstance> group) {
    if (this == PARALLEL) {
      return "all";
    }
    if (group.isEmpty()) {
      throw new IllegalArgumentException("an empty group has no label");
    }
    return this == ONE_AT_A_TIME ? group.get(0).id() : key(group.get(0));
  }

  /** What AZ and REGION group by; only called for those two. */
  private String key(InventoryInstance i) {
    String k = this == AZ ? i.availabilityZone() : i.region();
    return k == null || k.isEmpty() ? UNKNOWN_LABEL : k;
  }

  private List<List<InventoryInstance>> groupBy(List<InventoryInstance> inventory) {
    Map<String, List<InventoryInstance>> groups = new LinkedHashMap<>();
    for (InventoryInstance i : inventory) {
      groups.computeIfAbsent(key(i), k -> new ArrayList<>()).add(i);
    }
    return groups.values().stream().map(List::copyOf).toList();
  }

  @Override
  public String toString() {
    return wireName;
  }
}
