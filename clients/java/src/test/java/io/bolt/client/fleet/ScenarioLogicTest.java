package io.bolt.client.fleet;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.bolt.client.BoltClient;
import io.bolt.client.RetryPolicy;
import io.bolt.client.inventory.InventoryInstance;
import io.bolt.v1.HealthResponse;
import io.bolt.v1.ServingStatus;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * The shared scenario vectors against in-process {@link FakeAgent}s: a fast check
 * of the orchestration logic alone. {@link ScenarioTest} runs the same vectors
 * against real agents, which is what counts.
 */
class ScenarioLogicTest {
  @TestFactory
  Stream<DynamicTest> vectorsAgainstFakes() throws IOException {
    List<Path> files;
    try (Stream<Path> s = Files.list(ScenarioTest.scenarioDir())) {
      files = s.filter(p -> p.toString().endsWith(".json")).sorted().toList();
    }
    return files.stream().map(f -> DynamicTest.dynamicTest(f.getFileName().toString(), () -> run(f)));
  }

  @org.junit.jupiter.api.Test
  void clientKillsAndReportsTimedOutWhenTheAgentMissesTheTimeout() throws Exception {
    FakeAgent fake = new FakeAgent(false, false);
    fake.hang = true;
    String name = InProcessServerBuilder.generateName();
    Server server = InProcessServerBuilder.forName(name).addService(fake).build().start();
    ManagedChannel ch = InProcessChannelBuilder.forName(name).build();
    try (Fleet fleet = new Fleet(i -> new BoltClient(ch))) {
      InventoryInstance i = new InventoryInstance("i-1", "x", 1, "", "us-east-1a", "");
      FleetReport r = fleet.run(List.of(i), Task.of("bolt-test", "scenario", Map.of("seconds", "30")),
          RolloutOptions.builder().instanceTimeout(Duration.ofMillis(200)).timeoutGrace(Duration.ofMillis(200))
              .build());
      InstanceResult res = r.results().get(0);
      org.junit.jupiter.api.Assertions.assertEquals(Outcome.TIMED_OUT, res.outcome(), r.table());
      org.junit.jupiter.api.Assertions.assertTrue(res.error().contains("killed by the client"), res.error());
      org.junit.jupiter.api.Assertions.assertEquals(io.bolt.v1.State.STATE_KILLED,
          fake.execution(res.executionId()).getState());
      org.junit.jupiter.api.Assertions.assertTrue(r.stopped());
    } finally {
      ch.shutdownNow();
      server.shutdownNow();
    }
  }

  @org.junit.jupiter.api.Test
  void healthGateRefusalSaysWhyAsThePythonClient() throws Exception {
    FakeAgent sick = new FakeAgent(false, false);
    sick.health = HealthResponse.newBuilder().setStatus(ServingStatus.SERVING_STATUS_NOT_SERVING)
        .addProblems("disk full").addProblems("clock skew").build();
    FakeAgent mute = new FakeAgent(false, false);
    mute.health = HealthResponse.newBuilder().setStatusValue(99).build(); // a status newer than this client
    Map<String, ManagedChannel> channels = new HashMap<>();
    List<Server> servers = new ArrayList<>();
    try {
      for (Map.Entry<String, FakeAgent> e : Map.of("sick", sick, "mute", mute).entrySet()) {
        String name = InProcessServerBuilder.generateName();
        servers.add(InProcessServerBuilder.forName(name).addService(e.getValue()).build().start());
        channels.put(e.getKey(), InProcessChannelBuilder.forName(name).build());
      }
      List<InventoryInstance> inventory = List.of(new InventoryInstance("sick", "sick", 1, "", "", ""),
          new InventoryInstance("mute", "mute", 1, "", "", ""));
      Task task = Task.of("bolt-test", "scenario", Map.of());
      RolloutOptions options = RolloutOptions.builder().strategy(Strategy.PARALLEL).healthGate(true)
          .maxErrors(FailureBudget.unlimited()).build();
      try (Fleet fleet = new Fleet(i -> new BoltClient(channels.get(i.address())))) {
        FleetReport r = fleet.run(inventory, task, options);
        org.junit.jupiter.api.Assertions.assertEquals(List.of(Outcome.UNHEALTHY, Outcome.UNHEALTHY),
            r.results().stream().map(InstanceResult::outcome).toList(), r.table());
        org.junit.jupiter.api.Assertions.assertEquals("agent NOT_SERVING: disk full; clock skew",
            r.results().get(0).error());
        org.junit.jupiter.api.Assertions.assertEquals("agent UNSPECIFIED: no problem listed",
            r.results().get(1).error());
        // submit refuses with the same words, inside the error of the handle.
        Handle h = fleet.submit(inventory.subList(0, 1), task, options).get(0);
        org.junit.jupiter.api.Assertions.assertFalse(h.submitted());
        org.junit.jupiter.api.Assertions.assertTrue(
            h.errorText().endsWith("agent NOT_SERVING: disk full; clock skew"), h.errorText());
      }
      org.junit.jupiter.api.Assertions.assertEquals(0, sick.executionCount() + mute.executionCount(),
          "the health gate sends no Execute");
    } finally {
      channels.values().forEach(ManagedChannel::shutdownNow);
      servers.forEach(Server::shutdownNow);
    }
  }

  static void run(Path file) throws Exception {
    JsonObject v = JsonParser.parseString(Files.readString(file)).getAsJsonObject();
    List<Server> servers = new ArrayList<>();
    List<ManagedChannel> channels = new ArrayList<>();
    Map<String, String> names = new HashMap<>();
    List<InventoryInstance> inventory = new ArrayList<>();
    try {
      for (JsonElement e : v.getAsJsonArray("instances")) {
        JsonObject s = e.getAsJsonObject();
        String name = InProcessServerBuilder.generateName();
        servers.add(InProcessServerBuilder.forName(name)
            .addService(new FakeAgent(ScenarioTest.flag(s, "fail"), ScenarioTest.flag(s, "down"))).build().start());
        String id = s.get("id").getAsString();
        names.put(id, name);
        inventory.add(new InventoryInstance(id, id, 1, "scenario", s.get("availability_zone").getAsString(),
            s.get("region").getAsString()));
      }
      JsonObject action = v.getAsJsonObject("action");
      Task task = Task.of(action.get("pack").getAsString(), action.get("action").getAsString(),
          ScenarioTest.strings(action.getAsJsonObject("args")));
      for (JsonElement e : v.getAsJsonArray("instances")) {
        JsonObject s = e.getAsJsonObject();
        if (s.has("args")) {
          task = task.withArgsFor(s.get("id").getAsString(), ScenarioTest.strings(s.getAsJsonObject("args")));
        }
      }
      RolloutOptions options = ScenarioTest.options(v.has("options") ? v.getAsJsonObject("options") : new JsonObject());
      try (Fleet fleet = new Fleet(i -> {
        ManagedChannel ch = InProcessChannelBuilder.forName(names.get(i.id())).build();
        synchronized (channels) {
          channels.add(ch);
        }
        return new BoltClient(ch, Duration.ofSeconds(5), new RetryPolicy(2, Duration.ofMillis(5), Duration.ofMillis(5)));
      })) {
        FleetReport report = fleet.run(inventory, task, options);
        ScenarioTest.check(v.get("name").getAsString(), v.getAsJsonObject("expect"), report);
      }
    } finally {
      channels.forEach(ManagedChannel::shutdownNow);
      servers.forEach(Server::shutdownNow);
    }
  }
}
