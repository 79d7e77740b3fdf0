package io.bolt.client.inventory;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.sun.net.httpserver.HttpServer;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Against a local HTTP server serving Clouddriver's documented payload shapes
 * (src/test/resources/clouddriver/: the same server groups and instance details
 * as the Python client's tests), with the same expectations.
 */
class ClouddriverInventoryTest {
  private HttpServer server;
  private URI base;
  private final List<String> seen = new CopyOnWriteArrayList<>();
  private final Map<String, String> seenHeaders = new ConcurrentHashMap<>();

  static String resource(String name) throws Exception {
    try (InputStream in = ClouddriverInventoryTest.class.getResourceAsStream("/clouddriver/" + name)) {
      return new String(in.readAllBytes(), StandardCharsets.UTF_8);
    }
  }

  @BeforeEach
  void start() throws Exception {
    String groups = resource("serverGroups-kafka.json");
    JsonObject details = JsonParser.parseString(resource("instances.json")).getAsJsonObject();
    server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
    server.createContext("/", exchange -> {
      String path = exchange.getRequestURI().getPath();
      seen.add(path);
      String user = exchange.getRequestHeaders().getFirst("X-SPINNAKER-USER");
      if (user != null) {
        seenHeaders.put("user", user);
      }
      String body = null;
      if (path.equals("/applications/kafka/serverGroups")) {
        body = groups;
      } else if (path.startsWith("/instances/") && details.has(path.substring("/instances/".length()))) {
        body = details.get(path.substring("/instances/".length())).toString();
      }
      if (body == null) {
        exchange.sendResponseHeaders(404, -1);
        exchange.close();
        return;
      }
      byte[] data = body.getBytes(StandardCharsets.UTF_8);
      exchange.getResponseHeaders().add("Content-Type", "application/json");
      exchange.sendResponseHeaders(200, data.length);
      try (OutputStream out = exchange.getResponseBody()) {
        out.write(data);
      }
    });
    server.start();
    base = URI.create("http://127.0.0.1:" + server.getAddress().getPort());
  }

  @AfterEach
  void stop() {
    server.stop(0);
  }

  @Test
  void enabledServerGroupsWithAddressesFromInstanceDetails() {
    List<InventoryInstance> got = ClouddriverInventory.builder(base, "kafka").header("X-SPINNAKER-USER", "bolt").build()
        .instances();
    assertEquals(List.of("i-0a1", "i-0b1", "i-0w1"), got.stream().map(InventoryInstance::id).toList(),
        "the disabled server group is left out");
    assertEquals(List.of("10.1.0.11", "10.1.0.12", "10.2.0.21"), got.stream().map(InventoryInstance::address).toList());
    assertEquals(List.of("us-east-1a", "us-east-1b", "us-west-2a"),
        got.stream().map(InventoryInstance::availabilityZone).toList());
    assertEquals(List.of("us-east-1", "us-east-1", "us-west-2"), got.stream().map(InventoryInstance::region).toList());
    assertTrue(got.stream().allMatch(i -> i.app().equals("kafka") && i.port() == 7443));
    assertEquals("kafka-prod-v012", got.get(0).tags().get("serverGroup"));
    assertEquals("prod", got.get(0).tags().get("account"));
    assertTrue(seen.contains("/applications/kafka/serverGroups") && seen.contains("/instances/prod/us-east-1/i-0a1"));
    assertEquals("bolt", seenHeaders.get("user"));
  }

  @Test
  void filters() {
    assertEquals(List.of("i-0a1"), ClouddriverInventory.builder(base, "kafka").account("prod").healthyOnly(true)
        .build().instances().stream().map(InventoryInstance::id).toList());
    assertEquals(List.of("10.2.0.21"), ClouddriverInventory.builder(base, "kafka").region("us-west-2").build()
        .instances().stream().map(InventoryInstance::address).toList());
    assertEquals(List.of("54.0.0.11", "ec2-b1.example"), ClouddriverInventory.builder(base, "kafka").account("prod")
        .publicAddress(true).build().instances().stream().map(InventoryInstance::address).toList());
    assertTrue(ClouddriverInventory.builder(base, "kafka").account("prod").includeDisabled(true).build().instances()
        .stream().anyMatch(i -> i.id().equals("i-0old")));
    assertEquals(List.of("i-0w1"), ClouddriverInventory.builder(base, "kafka").cluster("kafka-test").port(7000)
        .build().instances().stream().map(InventoryInstance::id).toList());
  }

  @Test
  void httpErrorsAreInventoryErrors() {
    InventoryException e = assertThrows(InventoryException.class,
        () -> ClouddriverInventory.builder(base, "nope").build().instances());
    assertTrue(e.getMessage().contains("HTTP 404"), e.getMessage());
  }
}
