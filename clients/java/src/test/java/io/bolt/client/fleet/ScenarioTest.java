package io.bolt.client.fleet;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonPrimitive;
import com.google.gson.JsonParser;
import io.bolt.client.inventory.InventoryInstance;
import io.bolt.client.testing.TestAgent;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * Runs every shared vector of integration/scenarios/*.json (format and semantics in
 * its README.md) against real agents, one agent per instance, and checks the
 * report against the vector's expectations, as the Python client's tests do.
 */
class ScenarioTest {
  static Path tls;

  @BeforeAll
  static void certs() {
    TestAgent.assumeAgent();
    tls = TestAgent.initCerts("scenarios");
  }

  @AfterAll
  static void done() {}

  static Path scenarioDir() {
    return TestAgent.repoRoot().resolve("integration/scenarios");
  }

  @TestFactory
  Stream<DynamicTest> sharedScenarioVectors() throws IOException {
    List<Path> files;
    try (Stream<Path> s = Files.list(scenarioDir())) {
      files = s.filter(p -> p.toString().endsWith(".json")).sorted().toList();
    }
    assertFalse(files.isEmpty(), "no scenario vectors in " + scenarioDir());
    return files.stream().map(f -> DynamicTest.dynamicTest(f.getFileName().toString(), f.toUri(), () -> run(f)));
  }

  static void run(Path file) {
    JsonObject v;
    try {
      v = JsonParser.parseString(Files.readString(file)).getAsJsonObject();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    String name = v.get("name").getAsString();
    assertEquals(file.getFileName().toString(), name + ".json", "name = file name");

    // The fleet: one real agent per instance, started in parallel.
    JsonArray specs = v.getAsJsonArray("instances");
    List<CompletableFuture<TestAgent>> starting = new ArrayList<>();
    for (JsonElement e : specs) {
      JsonObject s = e.getAsJsonObject();
      starting.add(CompletableFuture.supplyAsync(() -> {
        TestAgent a = TestAgent.start(s.get("id").getAsString(), s.get("availability_zone").getAsString(),
            s.get("region").getAsString(), tls);
        if (flag(s, "fail")) {
          a.makeFail();
        }
        if (flag(s, "down")) {
          a.stop();
        }
        return a;
      }));
    }
    List<TestAgent> agents = new ArrayList<>();
    try {
      for (CompletableFuture<TestAgent> f : starting) {
        agents.add(f.join());
      }
      List<InventoryInstance> inventory = agents.stream().map(TestAgent::instance).toList();

      JsonObject action = v.getAsJsonObject("action");
      Task task = Task.of(action.get("pack").getAsString(), action.get("action").getAsString(),
          strings(action.getAsJsonObject("args")));
      for (JsonElement e : specs) {
        JsonObject s = e.getAsJsonObject();
        if (s.has("args")) {
          task = task.withArgsFor(s.get("id").getAsString(), strings(s.getAsJsonObject("args")));
        }
      }
      RolloutOptions options = options(v.has("options") ? v.getAsJsonObject("options") : new JsonObject());

      FleetReport report;
      try (Fleet fleet = Fleet.withTlsDir(tls)) {
        report = fleet.run(inventory, task, options);
      }
      check(name, v.getAsJsonObject("expect"), report);
    } finally {
      for (CompletableFuture<TestAgent> f : starting) {
        f.thenAccept(TestAgent::close);
      }
    }
  }

  static RolloutOptions options(JsonObject o) {
    RolloutOptions.Builder b = RolloutOptions.builder();
    if (o.has("strategy")) {
      b.strategy(Strategy.parse(o.get("strategy").getAsString()));
    }
    if (o.has("max_concurrency")) {
      JsonPrimitive mc = o.getAsJsonPrimitive("max_concurrency");
      if (mc.isString()) {
        b.maxConcurrency(mc.getAsString()); // "25%"
      } else {
        b.maxConcurrency(mc.getAsInt());
      }
    }
    if (o.has("max_errors")) {
      b.maxErrors(FailureBudget.parse(o.get("max_errors").getAsString()));
    }
    if (o.has("health_gate")) {
      b.healthGate(o.get("health_gate").getAsBoolean());
    }
    if (o.has("instance_timeout_seconds")) {
      b.instanceTimeout(Duration.ofMillis(Math.round(o.get("instance_timeout_seconds").getAsDouble() * 1000)));
    }
    return b.build();
  }

  static void check(String name, JsonObject expect, FleetReport report) {
    String context = name + "\n" + report.table();
    Map<String, String> outcomes = new LinkedHashMap<>();
    report.results().forEach(r -> outcomes.put(r.id(), r.outcome().name()));
    assertEquals(strings(expect.getAsJsonObject("outcomes")), outcomes, "outcomes of " + context);

    List<InstanceResult> started = report.results().stream().filter(r -> r.execution() != null).toList();
    for (InstanceResult r : started) {
      assertTrue(r.startedAt().isPresent() && r.endedAt().isPresent(), "times of " + r.id() + " in " + context);
    }
    if (expect.has("order")) {
      List<String> order = started.stream()
          .sorted(Comparator.comparing((InstanceResult r) -> r.startedAt().get()))
          .map(InstanceResult::id).toList();
      assertEquals(list(expect.getAsJsonArray("order")), order, "start order of " + context);
    }
    if (expect.has("groups")) {
      List<List<String>> groups = new ArrayList<>();
      expect.getAsJsonArray("groups").forEach(g -> groups.add(list(g.getAsJsonArray())));
      Set<String> union = new HashSet<>();
      groups.forEach(union::addAll);
      assertEquals(union, new HashSet<>(started.stream().map(InstanceResult::id).toList()),
          "started instances = the groups' members in " + context);
      for (int k = 0; k + 1 < groups.size(); k++) {
        Instant lastEnd = groups.get(k).stream().map(id -> report.result(id).get().endedAt().get())
            .max(Comparator.naturalOrder()).get();
        Instant firstStart = groups.get(k + 1).stream().map(id -> report.result(id).get().startedAt().get())
            .min(Comparator.naturalOrder()).get();
        assertFalse(firstStart.isBefore(lastEnd),
            "group " + (k + 1) + " started " + firstStart + " before group " + k + " ended " + lastEnd + " in "
                + context);
      }
    }
    int peak = peakRunning(started);
    if (expect.has("max_running")) {
      assertTrue(peak <= expect.get("max_running").getAsInt(), "peak running " + peak + " in " + context);
    }
    if (expect.has("min_peak_running")) {
      assertTrue(peak >= expect.get("min_peak_running").getAsInt(), "peak running " + peak + " in " + context);
    }
    assertEquals(expect.get("stopped").getAsBoolean(), report.stopped(), "stopped flag of " + context);
  }

  /** Largest number of overlapping [started_at, ended_at] intervals (touching ones do not overlap). */
  static int peakRunning(List<InstanceResult> started) {
    List<Map.Entry<Instant, Integer>> events = new ArrayList<>();
    for (InstanceResult r : started) {
      events.add(Map.entry(r.startedAt().get(), +1));
      events.add(Map.entry(r.endedAt().get(), -1));
    }
    events.sort(Map.Entry.<Instant, Integer>comparingByKey().thenComparing(Map.Entry.comparingByValue()));
    int running = 0;
    int peak = 0;
    for (Map.Entry<Instant, Integer> e : events) {
      running += e.getValue();
      peak = Math.max(peak, running);
    }
    return peak;
  }

  static boolean flag(JsonObject o, String key) {
    return o.has(key) && o.get(key).getAsBoolean();
  }

  static Map<String, String> strings(JsonObject o) {
    Map<String, String> m = new LinkedHashMap<>();
    if (o != null) {
      o.entrySet().forEach(e -> m.put(e.getKey(), e.getValue().getAsString()));
    }
    return m;
  }

  static List<String> list(JsonArray a) {
    List<String> l = new ArrayList<>();
    a.forEach(e -> l.add(e.getAsString()));
    return l;
  }
}
