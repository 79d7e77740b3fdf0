package io.bolt.client.fleet;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bolt.client.BoltException;
import io.bolt.client.OutputTail;
import io.bolt.client.inventory.InventoryInstance;
import io.bolt.client.testing.TestAgent;
import io.bolt.v1.Execution;
import io.bolt.v1.State;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Fire-and-check-back handles, reattaching by id, reports and progress, against real agents. */
@Timeout(value = 90, unit = TimeUnit.SECONDS)
class FleetAgentTest {
  static Path tls;
  static List<TestAgent> agents = new ArrayList<>();
  static TestAgent down;

  @BeforeAll
  static void start() {
    TestAgent.assumeAgent();
    tls = TestAgent.initCerts("fleet");
    agents.add(TestAgent.start("i-f1", "us-east-1a", "us-east-1", tls));
    agents.add(TestAgent.start("i-f2", "us-east-1b", "us-east-1", tls));
    down = TestAgent.start("i-down", "us-east-1c", "us-east-1", tls);
    down.stop();
  }

  @AfterAll
  static void stop() {
    agents.forEach(TestAgent::close);
  }

  static List<InventoryInstance> live() {
    return agents.stream().map(TestAgent::instance).toList();
  }

  @Test
  void submitThenCheckBackFromAnotherFleet() {
    List<InventoryInstance> inventory = new ArrayList<>(live());
    inventory.add(down.instance());
    List<String> ids = new ArrayList<>();
    try (Fleet fleet = Fleet.withTlsDir(tls)) {
      List<Handle> handles = fleet.submit(inventory,
          Task.of("bolt-test", "sleep", Map.of("ticks", "3", "interval", "0.7")), RolloutOptions.defaults());
      assertEquals(3, handles.size());
      assertTrue(handles.get(0).submitted() && handles.get(1).submitted());
      assertFalse(handles.get(2).submitted());
      assertInstanceOf(BoltException.UnavailableException.class, handles.get(2).error().get());
      handles.subList(0, 2).forEach(h -> ids.add(h.executionId()));
      ids.add(handles.get(1).toJson().toString()); // stored as JSON, as a script would
      assertEquals("bolt-test", handles.get(0).pack());
      assertFalse(handles.get(0).idempotencyKey().isEmpty());
      assertFalse(handles.get(2).toJson().get("error").getAsString().isEmpty());
      State s = handles.get(0).status().getState();
      assertTrue(s == State.STATE_PENDING || s == State.STATE_RUNNING, s.toString());
    }
    // "Another process": a new fleet, only the instances and execution ids.
    try (Fleet later = Fleet.withTlsDir(tls)) {
      Handle h0 = later.attach(live().get(0), ids.get(0));
      StringBuilder text = new StringBuilder();
      try (OutputTail tail = h0.tail()) {
        tail.forEachRemaining(c -> text.append(c.getData().toStringUtf8()));
      }
      assertEquals("tick 1\ntick 2\ntick 3\ndone\n", text.toString());
      Handle h1 = later.attach(ids.get(2));
      assertEquals(ids.get(1), h1.executionId());
      assertEquals(live().get(1), h1.instance());
      FleetReport report = later.collect(List.of(h0, h1), Duration.ofSeconds(30));
      assertTrue(report.succeeded(), report.table());
      assertEquals(ids.get(1), report.results().get(1).executionId());
    }
  }

  @Test
  void attachesAHandleWrittenByThePythonClient() {
    InventoryInstance target = live().get(0);
    String id;
    try (io.bolt.client.BoltClient c = agents.get(0).client()) {
      id = c.execute("bolt-test", "noop", Map.of()).getExecutionId();
    }
    // The shape of bolt_client.Handle.to_dict() (address as "host:port").
    String python = "{\"instance\": {\"id\": \"i-f1\", \"address\": \"127.0.0.1:" + target.port() + "\", "
        + "\"app\": \"scenario\", \"availability_zone\": \"us-east-1a\", \"region\": \"us-east-1\", "
        + "\"tags\": {}}, \"execution_id\": \"" + id + "\", \"pack\": \"bolt-test\", \"action\": \"noop\", "
        + "\"idempotency_key\": \"k\", \"error\": \"\"}";
    try (Fleet fleet = Fleet.withTlsDir(tls)) {
      Handle h = fleet.attach(python);
      assertEquals(target, h.instance());
      assertEquals("noop", h.action());
      assertEquals(State.STATE_SUCCEEDED, h.waitFor(Duration.ofSeconds(20)).getState());
    }
  }

  @Test
  void rolloutOverAnInventoryFile(@org.junit.jupiter.api.io.TempDir Path dir) throws Exception {
    com.google.gson.JsonArray list = new com.google.gson.JsonArray();
    live().forEach(i -> list.add(i.toJson()));
    Path file = dir.resolve("fleet.json");
    java.nio.file.Files.writeString(file, list.toString());
    try (Fleet fleet = Fleet.withTlsDir(tls)) {
      FleetReport r = fleet.run(io.bolt.client.inventory.StaticInventory.fromJsonFile(file),
          Task.of("bolt-test", "echo", Map.of("msg", "hi")),
          RolloutOptions.builder().strategy(Strategy.PARALLEL).healthGate(true).build());
      assertTrue(r.ok(), r.table());
      assertTrue(r.results().get(1).outputExcerpt().contains("argv:--msg=hi"), r.results().get(1).outputExcerpt());
    }
  }

  @Test
  void killThroughAHandle() {
    try (Fleet fleet = Fleet.withTlsDir(tls)) {
      Handle h = fleet.submit(live().subList(0, 1), Task.of("bolt-test", "sleep", Map.of("ticks", "600",
          "interval", "0.1")), RolloutOptions.defaults()).get(0);
      try (OutputTail tail = h.tail()) {
        assertTrue(tail.hasNext());
      }
      h.kill();
      Execution e = h.waitFor(Duration.ofSeconds(20));
      assertEquals(State.STATE_KILLED, e.getState());
    }
  }

  @Test
  void reportCarriesExitCodesExcerptsAndProgress() {
    List<String> events = Collections.synchronizedList(new ArrayList<>());
    FleetListener listener = new FleetListener() {
      @Override
      public void groupStarted(int index, String label, List<InventoryInstance> members) {
        events.add("group " + label);
      }

      @Override
      public void instanceStarted(InventoryInstance instance) {
        events.add("start " + instance.id());
      }

      @Override
      public void instanceFinished(InstanceResult result) {
        events.add("end " + result.id() + " " + result.outcome());
      }
    };
    try (Fleet fleet = Fleet.withTlsDir(tls)) {
      FleetReport r = fleet.run(live(), Task.of("bolt-test", "fail", Map.of("code", "7")),
          RolloutOptions.builder().strategy(Strategy.AZ).maxErrors(FailureBudget.percent(100)).build(), listener);
      assertFalse(r.stopped());
      assertEquals(2, r.errors());
      for (InstanceResult ir : r.results()) {
        assertEquals(Outcome.FAILED, ir.outcome());
        assertEquals(7, ir.exitCode().orElseThrow());
        assertTrue(ir.outputExcerpt().contains("failing with 7"), ir.outputExcerpt());
        assertFalse(ir.executionId().isEmpty());
        assertTrue(ir.duration().compareTo(Duration.ZERO) >= 0);
      }
      assertEquals(List.of("group us-east-1a", "start i-f1", "end i-f1 FAILED", "group us-east-1b", "start i-f2",
          "end i-f2 FAILED"), events);
      com.google.gson.JsonObject json = r.toJson();
      assertEquals("bolt-test/fail", json.get("action").getAsString());
      assertEquals("az", json.get("strategy").getAsString());
      assertEquals("100%", json.get("max_errors").getAsString());
      assertEquals(2, json.getAsJsonObject("counts").get("FAILED").getAsInt());
      com.google.gson.JsonObject first = json.getAsJsonArray("instances").get(0).getAsJsonObject();
      assertEquals(7, first.get("exit_code").getAsInt());
      assertEquals("i-f1", first.getAsJsonObject("instance").get("id").getAsString());
      assertFalse(first.get("started_at").isJsonNull());
    }
  }

  @Test
  void tableShowsTheExecutionOfEveryInstance() {
    List<InventoryInstance> inventory = new ArrayList<>(live());
    inventory.add(down.instance());
    try (Fleet fleet = Fleet.withTlsDir(tls)) {
      FleetReport r = fleet.run(inventory, Task.of("bolt-test", "echo", Map.of("msg", "last words")),
          RolloutOptions.builder().strategy(Strategy.PARALLEL).maxErrors(FailureBudget.unlimited()).build());
      String table = r.table();
      List<String> lines = table.lines().toList();
      String header = lines.get(0);
      assertEquals(List.of("INSTANCE", "ADDRESS", "AZ", "REGION", "OUTCOME", "EXIT", "DURATION", "EXECUTION",
          "DETAIL"), List.of(header.split("\\s+")), table);
      for (InstanceResult ir : r.results()) {
        String row = lines.stream().filter(l -> l.startsWith(ir.id() + " ")).findFirst().orElseThrow();
        // Columns are aligned under their headers.
        String execution = row.substring(header.indexOf("EXECUTION")).split("\\s+")[0];
        String address = row.substring(header.indexOf("ADDRESS")).split("\\s+")[0];
        assertEquals(ir.instance().target(), address, table);
        if (ir.id().equals("i-down")) {
          assertEquals(Outcome.ERROR, ir.outcome(), table);
          assertEquals("-", execution, table);
          // The detail is the error, which says where and what happened (not grpc's "io exception").
          assertTrue(row.contains(ir.instance().target() + ": Execute failed: UNAVAILABLE: "), table);
          assertTrue(ir.error().contains("Connection refused"), ir.error());
        } else {
          assertEquals(Outcome.SUCCEEDED, ir.outcome(), table);
          assertFalse(ir.executionId().isEmpty());
          assertEquals(ir.executionId(), execution, table);
          String lastOutputLine = ir.outputExcerpt().strip().lines().reduce((a, b) -> b).orElseThrow().strip();
          assertTrue(lastOutputLine.length() > 60 || row.endsWith(lastOutputLine), table);
        }
      }
      assertTrue(lines.get(lines.size() - 1).startsWith("3 instances: 2 SUCCEEDED, 1 ERROR; 1 errors"), table);
    }
  }

  @Test
  void percentageConcurrencyIsOfEachGroup() {
    // 50% of a two-instance group is one at a time: the second starts after the first ended.
    try (Fleet fleet = Fleet.withTlsDir(tls)) {
      FleetReport r = fleet.run(live(), Task.of("bolt-test", "sleep", Map.of("ticks", "2", "interval", "0.3")),
          RolloutOptions.builder().strategy(Strategy.PARALLEL).maxConcurrency("50%").build());
      assertTrue(r.ok(), r.table());
      InstanceResult first = r.results().get(0);
      InstanceResult second = r.results().get(1);
      assertFalse(second.startedAt().orElseThrow().isBefore(first.endedAt().orElseThrow()), r.table());
      assertEquals("50%", r.toJson().get("max_concurrency").getAsString());
    }
  }
}
