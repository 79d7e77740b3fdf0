package io.bolt.client.inventory;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class StaticInventoryTest {
  @Test
  void readsAJsonFileInOrder(@TempDir Path dir) throws Exception {
    Path f = dir.resolve("fleet.json");
    Files.writeString(f, """
        {"instances": [
          {"id": "i-1", "address": "10.0.0.1", "app": "kafka", "availability_zone": "us-east-1a"},
          {"id": "i-2", "address": "10.0.0.2:7000", "az": "us-west-2b", "region": "us-west-2",
           "tags": {"team": "data"}},
          "10.0.0.3"
        ]}
        """);
    List<InventoryInstance> inv = StaticInventory.fromJsonFile(f).instances();
    assertEquals(3, inv.size());
    assertEquals(new InventoryInstance("i-1", "10.0.0.1", 7443, "kafka", "us-east-1a", "us-east-1"), inv.get(0));
    assertEquals(7000, inv.get(1).port());
    assertEquals("us-west-2", inv.get(1).region());
    assertEquals("data", inv.get(1).tags().get("team"));
    assertEquals("10.0.0.3", inv.get(2).id());
    assertEquals("10.0.0.3:7443", inv.get(2).target());
  }

  @Test
  void aBareListAndBadInput(@TempDir Path dir) throws Exception {
    assertEquals(1, StaticInventory.fromJson("[{\"id\":\"a\",\"address\":\"h\"}]").instances().size());
    assertEquals("a", StaticInventory.fromJson("[{\"id\":\"a\"}]").instances().get(0).address(),
        "the address defaults to the id");
    assertThrows(InventoryException.class, () -> StaticInventory.fromJson("[{\"app\":\"x\"}]"));
    assertThrows(InventoryException.class, () -> StaticInventory.fromJson("{\"x\":1}"));
    assertThrows(InventoryException.class, () -> StaticInventory.fromJson("[{\"id\":\"x\",\"address\":\"a\"},"
        + "{\"id\":\"x\",\"address\":\"b\"}]"), "duplicate ids");
    StaticInventory missing = StaticInventory.fromJsonFile(dir.resolve("nope.json"));
    assertThrows(InventoryException.class, missing::instances);
  }

  @Test
  void theFileIsReadOnDemand(@TempDir Path dir) throws Exception {
    Path f = dir.resolve("fleet.json");
    Files.writeString(f, "[\"h1\"]");
    StaticInventory inv = StaticInventory.fromJsonFile(f);
    assertEquals(1, inv.instances().size());
    Files.writeString(f, "[\"h1\", \"h2:9\"]");
    assertEquals(2, inv.instances().size());
  }

  @Test
  void aListInCode() {
    InventoryInstance a = new InventoryInstance("a", "h", 1, "", "", "");
    assertEquals(List.of(a), StaticInventory.of(a).instances());
  }
}
