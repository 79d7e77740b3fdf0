package io.bolt.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.bolt.client.fleet.FailureBudget;
import io.bolt.client.fleet.Strategy;
import io.bolt.client.inventory.InventoryInstance;
import java.util.List;
import org.junit.jupiter.api.Test;

class PureLogicTest {
  static InventoryInstance i(String id, String az) {
    return new InventoryInstance(id, "127.0.0.1", 1, "", az, InventoryInstance.regionOf(az));
  }

  @Test
  void groupsFollowFirstAppearance() {
    List<InventoryInstance> inv = List.of(i("a1", "us-east-1a"), i("b1", "us-east-1b"), i("w1", "us-west-2a"),
        i("a2", "us-east-1a"));
    assertEquals(List.of(List.of("a1", "a2"), List.of("b1"), List.of("w1")), ids(Strategy.AZ.groups(inv)));
    assertEquals(List.of(List.of("a1", "b1", "a2"), List.of("w1")), ids(Strategy.REGION.groups(inv)));
    assertEquals(List.of(List.of("a1", "b1", "w1", "a2")), ids(Strategy.PARALLEL.groups(inv)));
    assertEquals(4, Strategy.ONE_AT_A_TIME.groups(inv).size());
    assertEquals(Strategy.ONE_AT_A_TIME, Strategy.parse("one-at-a-time"));
    assertThrows(IllegalArgumentException.class, () -> Strategy.parse("random"));
  }

  static List<List<String>> ids(List<List<InventoryInstance>> groups) {
    return groups.stream().map(g -> g.stream().map(InventoryInstance::id).toList()).toList();
  }

  @Test
  void failureBudgets() {
    assertEquals(1, FailureBudget.parse("25%").allowed(4));
    assertEquals(0, FailureBudget.parse("25%").allowed(3));
    assertEquals(2, FailureBudget.parse("2").allowed(100));
    assertEquals(33, FailureBudget.percent(33.3).allowed(100));
  }

  @Test
  void regionFromZoneAndHostPorts() {
    assertEquals("us-east-1", InventoryInstance.regionOf("us-east-1a"));
    assertEquals("", InventoryInstance.regionOf(""));
    assertEquals(new HostPort("10.0.0.1", 7443), HostPort.parse("10.0.0.1", 7443));
    assertEquals(new HostPort("h", 9), HostPort.parse("h:9", 7443));
    assertEquals(new HostPort("::1", 9), HostPort.parse("[::1]:9", 7443));
  }
}
