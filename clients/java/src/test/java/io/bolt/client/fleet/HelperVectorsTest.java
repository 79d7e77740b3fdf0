package io.bolt.client.fleet;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;
import io.bolt.client.inventory.InventoryInstance;
import io.bolt.client.testing.TestAgent;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.reflect.Method;
import java.lang.reflect.RecordComponent;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import java.util.stream.StreamSupport;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * The shared helper vectors (integration/scenarios/helpers/fleet-helpers.json):
 * idempotency keys, strategy names, failure budgets, option names, output
 * excerpts, groups and the options a report shows, as the Python client checks
 * them too. Pure logic, no agent.
 */
class HelperVectorsTest {
  static final JsonObject VECTORS = load();

  static JsonObject load() {
    try {
      return JsonParser.parseString(Files.readString(
          TestAgent.repoRoot().resolve("integration/scenarios/helpers/fleet-helpers.json"), StandardCharsets.UTF_8))
          .getAsJsonObject();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  static Stream<JsonElement> each(JsonObject o, String key) {
    return StreamSupport.stream(o.getAsJsonArray(key).spliterator(), false);
  }

  // --- idempotency keys

  @TestFactory
  Stream<DynamicTest> idempotencyKeys() {
    JsonObject keys = VECTORS.getAsJsonObject("idempotency_key");
    int max = keys.get("max_bytes").getAsInt();
    return each(keys, "vectors").map(JsonElement::getAsJsonObject).map(v -> DynamicTest.dynamicTest(
        v.get("name").getAsString(), () -> {
          String key = Fleet.idempotencyKey(v.get("run_id").getAsString(), v.get("instance_id").getAsString());
          assertEquals(v.get("key").getAsString(), key);
          assertTrue(key.getBytes(StandardCharsets.UTF_8).length <= max, key);
        }));
  }

  @Test
  void idempotencyKeysOfTheVectorsAreDistinct() {
    List<String> keys = each(VECTORS.getAsJsonObject("idempotency_key"), "vectors")
        .map(v -> v.getAsJsonObject().get("key").getAsString()).toList();
    assertEquals(keys.size(), new HashSet<>(keys).size());
  }

  @TestFactory
  Stream<DynamicTest> rejectedRunIds() {
    return each(VECTORS.getAsJsonObject("idempotency_key"), "rejected_run_ids").map(JsonElement::getAsString)
        .map(r -> DynamicTest.dynamicTest("'" + r + "'", () -> {
          IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
              () -> Fleet.idempotencyKey(r, "i-1"));
          assertTrue(e.getMessage().contains("run id"), e.getMessage());
        }));
  }

  // --- strategy names

  @TestFactory
  Stream<DynamicTest> acceptedStrategyNames() {
    return VECTORS.getAsJsonObject("strategy").getAsJsonObject("accepted").entrySet().stream()
        .map(e -> DynamicTest.dynamicTest("'" + e.getKey() + "'",
            () -> assertEquals(e.getValue().getAsString(), Strategy.parse(e.getKey()).wireName())));
  }

  @TestFactory
  Stream<DynamicTest> rejectedStrategyNames() {
    return each(VECTORS.getAsJsonObject("strategy"), "rejected").map(JsonElement::getAsString)
        .map(n -> DynamicTest.dynamicTest("'" + n + "'", () -> {
          IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Strategy.parse(n));
          assertTrue(e.getMessage().contains("unknown strategy"), e.getMessage());
        }));
  }

  @Test
  void everyStrategyHasAVector() {
    Set<String> canonical = VECTORS.getAsJsonObject("strategy").getAsJsonObject("accepted").entrySet().stream()
        .map(e -> e.getValue().getAsString()).collect(Collectors.toSet());
    assertEquals(Arrays.stream(Strategy.values()).map(Strategy::wireName).collect(Collectors.toSet()), canonical);
  }

  // --- failure budgets

  /** A vector's max_errors: a JSON number is a count, a string is parsed. */
  static FailureBudget budget(JsonElement e) {
    return e.getAsJsonPrimitive().isNumber() ? FailureBudget.count(e.getAsInt()) : FailureBudget.parse(e.getAsString());
  }

  @TestFactory
  Stream<DynamicTest> failureBudgets() {
    return each(VECTORS.getAsJsonObject("failure_budget"), "vectors").map(JsonElement::getAsJsonObject)
        .map(v -> DynamicTest.dynamicTest(v.get("max_errors") + " of " + v.get("instances"), () -> assertEquals(
            v.get("allowed").getAsInt(), budget(v.get("max_errors")).allowed(v.get("instances").getAsInt()))));
  }

  @TestFactory
  Stream<DynamicTest> rejectedFailureBudgets() {
    return each(VECTORS.getAsJsonObject("failure_budget"), "rejected")
        .map(b -> DynamicTest.dynamicTest(b.toString(),
            () -> assertThrows(IllegalArgumentException.class, () -> budget(b))));
  }

  // --- option names and defaults

  static String camel(String snake) {
    StringBuilder sb = new StringBuilder();
    boolean up = false;
    for (char c : snake.toCharArray()) {
      if (c == '_') {
        up = true;
      } else {
        sb.append(up ? Character.toUpperCase(c) : c);
        up = false;
      }
    }
    return sb.toString();
  }

  /** An option's value as the vectors write it: durations in seconds, names, null for unset or unlimited. */
  static Object plain(String name, Object v) {
    if (v instanceof Duration d) {
      return d.toMillis() / 1000.0;
    }
    if (v instanceof Strategy s) {
      return s.wireName();
    }
    if (v instanceof FailureBudget b) {
      return b.isPercent() ? b.toString() : (double) b.count();
    }
    if (v instanceof ConcurrencyLimit c) {
      return c.isPercent() ? c.toString() : (double) c.count();
    }
    if (v instanceof Integer i) {
      return i.doubleValue();
    }
    return v;
  }

  @Test
  void optionNamesAndDefaults() throws Exception {
    JsonObject options = VECTORS.getAsJsonObject("options");
    RolloutOptions defaults = RolloutOptions.defaults();
    List<String> expected = new ArrayList<>();
    for (JsonElement e : options.getAsJsonArray("vectors")) {
      JsonObject o = e.getAsJsonObject();
      String name = camel(o.get("name").getAsString());
      expected.add(name);
      assertNotNull(Arrays.stream(RolloutOptions.Builder.class.getMethods())
          .filter(m -> m.getName().equals(name)).findFirst().orElse(null), "Builder." + name);
      Method accessor = RolloutOptions.class.getMethod(name);
      JsonElement d = o.get("default");
      Object want = d.isJsonNull() ? null
          : d.getAsJsonPrimitive().isNumber() ? (Object) d.getAsDouble()
          : d.getAsJsonPrimitive().isBoolean() ? (Object) d.getAsBoolean() : d.getAsString();
      assertEquals(want, plain(o.get("name").getAsString(), accessor.invoke(defaults)), name);
    }
    List<String> components = Arrays.stream(RolloutOptions.class.getRecordComponents())
        .map(RecordComponent::getName).toList();
    assertEquals(expected, components, "RolloutOptions has exactly the shared option names, in order");
    assertTrue(options.getAsJsonObject("deprecated").getAsJsonObject("java").entrySet().isEmpty(),
        "the Java client has no deprecated option names to check");
  }

  @TestFactory
  Stream<DynamicTest> rejectedMaxConcurrency() {
    return each(VECTORS.getAsJsonObject("options"), "rejected_max_concurrency").map(JsonElement::getAsInt)
        .map(n -> DynamicTest.dynamicTest(String.valueOf(n), () -> assertThrows(IllegalArgumentException.class,
            () -> RolloutOptions.builder().maxConcurrency(n))));
  }

  // --- concurrency

  /** A vector's max_concurrency as scripts and JSON give it: a JSON int, string or boolean. */
  static Object spec(JsonElement e) {
    JsonPrimitive p = e.getAsJsonPrimitive();
    return p.isNumber() ? (Object) p.getAsBigDecimal().intValueExact()
        : p.isBoolean() ? (Object) p.getAsBoolean() : p.getAsString();
  }

  @TestFactory
  Stream<DynamicTest> concurrencyLimits() {
    return each(VECTORS.getAsJsonObject("concurrency"), "vectors").map(JsonElement::getAsJsonObject)
        .map(v -> DynamicTest.dynamicTest(v.get("max_concurrency") + " of " + v.get("group_size"), () -> {
          Object spec = spec(v.get("max_concurrency"));
          int groupSize = v.get("group_size").getAsInt();
          int limit = v.get("limit").getAsInt();
          assertEquals(limit, RolloutOptions.concurrencyLimit(spec, groupSize));
          // The same through the builder, as a rollout uses it (AZ: limits apply per group).
          RolloutOptions.Builder b = RolloutOptions.builder().strategy(Strategy.AZ);
          RolloutOptions o = spec instanceof Integer n ? b.maxConcurrency(n).build()
              : b.maxConcurrency((String) spec).build();
          assertEquals(limit, o.concurrency(groupSize));
        }));
  }

  @TestFactory
  Stream<DynamicTest> rejectedConcurrency() {
    return each(VECTORS.getAsJsonObject("concurrency"), "rejected")
        .map(r -> DynamicTest.dynamicTest(r.toString(), () -> {
          Object spec = spec(r);
          assertThrows(IllegalArgumentException.class, () -> RolloutOptions.concurrencyLimit(spec, 10));
          if (spec instanceof String s) {
            assertThrows(IllegalArgumentException.class, () -> RolloutOptions.builder().maxConcurrency(s));
          } else if (spec instanceof Integer n) {
            assertThrows(IllegalArgumentException.class, () -> RolloutOptions.builder().maxConcurrency(n));
          }
        }));
  }

  @Test
  void oneAtATimeIsAlwaysOneAndUnsetIsTheWholeGroup() {
    assertEquals(1, RolloutOptions.builder().maxConcurrency("100%").build().concurrency(10));
    assertEquals(10, RolloutOptions.builder().strategy(Strategy.PARALLEL).build().concurrency(10));
    assertEquals("25%", RolloutOptions.builder().maxConcurrency(" 25 % ").build().maxConcurrency().toString());
  }

  // --- output excerpt

  @Test
  void excerptMark() {
    assertEquals(VECTORS.getAsJsonObject("excerpt").get("mark").getAsString(), Fleet.Excerpt.MARK);
  }

  @TestFactory
  Stream<DynamicTest> outputExcerpts() {
    return each(VECTORS.getAsJsonObject("excerpt"), "vectors").map(JsonElement::getAsJsonObject)
        .map(v -> DynamicTest.dynamicTest(v.get("name").getAsString(), () -> {
          Fleet.Excerpt e = new Fleet.Excerpt(v.get("limit").getAsInt());
          each(v, "chunks").forEach(c -> e.add(c.getAsString().getBytes(StandardCharsets.UTF_8)));
          assertEquals(v.get("text").getAsString(), e.text());
        }));
  }

  @Test
  void excerptCutByteByByteNeverStartsWithAPartialCharacter() {
    // Chunks that split characters, as output streams may.
    Fleet.Excerpt e = new Fleet.Excerpt(5);
    for (byte b : "é🚀é🚀".getBytes(StandardCharsets.UTF_8)) {
      e.add(new byte[] {b});
    }
    assertEquals("…🚀", e.text());
  }

  // --- groups and their labels

  @TestFactory
  Stream<DynamicTest> groupsAndLabels() {
    JsonObject groups = VECTORS.getAsJsonObject("groups");
    List<InventoryInstance> inventory = each(groups, "instances").map(JsonElement::getAsJsonObject)
        .map(i -> new InventoryInstance(i.get("id").getAsString(), "h-" + i.get("id").getAsString(), 7443, "",
            i.get("availability_zone").getAsString(), i.get("region").getAsString()))
        .toList();
    return each(groups, "vectors").map(JsonElement::getAsJsonObject)
        .map(v -> DynamicTest.dynamicTest(v.get("strategy").getAsString(), () -> {
          Strategy s = Strategy.parse(v.get("strategy").getAsString());
          List<Map<String, Object>> want = each(v, "groups").map(JsonElement::getAsJsonObject)
              .map(g -> Map.<String, Object>of("label", g.get("label").getAsString(),
                  "members", each(g, "members").map(JsonElement::getAsString).toList()))
              .toList();
          List<Map<String, Object>> got = s.groups(inventory).stream()
              .map(g -> Map.<String, Object>of("label", s.label(g),
                  "members", g.stream().map(InventoryInstance::id).toList()))
              .toList();
          assertEquals(want, got);
        }));
  }

  @Test
  void unknownGroupLabel() {
    assertEquals(VECTORS.getAsJsonObject("groups").get("unknown_label").getAsString(), Strategy.UNKNOWN_LABEL);
  }

  // --- report options

  /** A report over nothing, to read the options back from its JSON. */
  static JsonElement reported(RolloutOptions options, String option) {
    FleetReport r = new FleetReport("run-1", Task.of("p", "a", Map.of()), options, List.of(), false, 0, 0,
        Duration.ZERO);
    return r.toJson().get(option);
  }

  @TestFactory
  Stream<DynamicTest> reportedMaxErrors() {
    return each(VECTORS.getAsJsonObject("report_options"), "max_errors").map(JsonElement::getAsJsonObject)
        .map(v -> DynamicTest.dynamicTest(v.get("max_errors").toString(), () -> {
          RolloutOptions o = RolloutOptions.builder().maxErrors(budget(v.get("max_errors"))).build();
          // JsonPrimitive equality tells the number 7 from the string "7".
          assertEquals(v.get("json"), reported(o, "max_errors"));
        }));
  }

  @TestFactory
  Stream<DynamicTest> reportedMaxConcurrency() {
    return each(VECTORS.getAsJsonObject("report_options"), "max_concurrency").map(JsonElement::getAsJsonObject)
        .map(v -> DynamicTest.dynamicTest(v.get("max_concurrency").toString(), () -> {
          RolloutOptions.Builder b = RolloutOptions.builder().strategy(Strategy.PARALLEL);
          JsonElement typed = v.get("max_concurrency");
          if (!typed.isJsonNull()) {
            Object spec = spec(typed);
            if (spec instanceof Integer n) {
              b.maxConcurrency(n);
            } else {
              b.maxConcurrency((String) spec);
            }
          }
          assertEquals(v.get("json"), reported(b.build(), "max_concurrency"));
        }));
  }

  @Test
  void runIdsAndDuplicateInstancesAreRefusedBeforeAnythingStarts() {
    Task task = Task.of("p", "a", Map.of());
    InventoryInstance i = new InventoryInstance("i-1", "h", 1, "", "", "");
    try (Fleet fleet = new Fleet(x -> {
      throw new AssertionError("no client may be made");
    })) {
      assertThrows(IllegalArgumentException.class,
          () -> fleet.run(List.of(i), task, RolloutOptions.defaults(), null, "a:b"));
      assertThrows(IllegalArgumentException.class,
          () -> fleet.submit(List.of(i), task, RolloutOptions.defaults(), ""));
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
          () -> fleet.run(List.of(i, i), task, RolloutOptions.defaults()));
      assertTrue(e.getMessage().contains("duplicate"), e.getMessage());
    }
  }
}
