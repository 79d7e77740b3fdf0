package io.bolt.client;

import static org.junit.jupiter.api.Assertions.assertEquals;

// Both on purpose: with the inventory record named Instance too, these two
// single-type imports would not compile ("a type with the same simple name is
// already defined by the single-type-import").
import io.bolt.client.inventory.InventoryInstance;
import io.bolt.v1.Instance;
import org.junit.jupiter.api.Test;

/** The generated io.bolt.v1.Instance and the inventory's instance can be imported together. */
class InstanceNamesTest {
  @Test
  void inventoryInstanceFromAnAgentsOwnLabels() {
    Instance labels = Instance.newBuilder().setInstanceId("i-0abc").setApp("kafka")
        .setAvailabilityZone("us-east-1a").setRegion("us-east-1").build();
    InventoryInstance i = new InventoryInstance(labels.getInstanceId(), "10.0.0.7", 7443, labels.getApp(),
        labels.getAvailabilityZone(), labels.getRegion());
    assertEquals("i-0abc", i.id());
    assertEquals("10.0.0.7:7443", i.target());
    assertEquals(labels.getRegion(), i.region());
  }
}
