package io.bolt.client.inventory;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.net.HttpURLConnection;
import java.net.ServerSocket;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.http.urlconnection.UrlConnectionHttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.ec2.Ec2Client;
import software.amazon.awssdk.services.ec2.model.InstanceType;
import software.amazon.awssdk.services.ec2.model.ResourceType;
import software.amazon.awssdk.services.ec2.model.Tag;
import software.amazon.awssdk.services.ec2.model.TagSpecification;

/**
 * Against moto in server mode: the path of {@code moto_server} comes from the
 * system property {@code bolt.moto.server} or the environment variable
 * {@code BOLT_MOTO_SERVER}; without it the test is skipped.
 */
class Ec2InventoryTest {
  private static Process moto;
  private static URI endpoint;
  private static Ec2Client ec2;
  private static final StaticCredentialsProvider CREDS =
      StaticCredentialsProvider.create(AwsBasicCredentials.create("testing", "testing"));

  static Path motoServer() {
    String p = System.getProperty("bolt.moto.server", "");
    if (p.isBlank()) {
      p = System.getenv().getOrDefault("BOLT_MOTO_SERVER", "");
    }
    return p.isBlank() ? null : Paths.get(p);
  }

  @BeforeAll
  static void startMoto() throws Exception {
    Path bin = motoServer();
    assumeTrue(bin != null && Files.isExecutable(bin), "BOLT_MOTO_SERVER not set or not executable");
    int port;
    try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
      port = s.getLocalPort();
    }
    Path log = Paths.get("target", "moto-server.log").toAbsolutePath();
    Files.createDirectories(log.getParent());
    moto = new ProcessBuilder(bin.toString(), "-H", "127.0.0.1", "-p", String.valueOf(port))
        .redirectErrorStream(true).redirectOutput(log.toFile()).start();
    endpoint = URI.create("http://127.0.0.1:" + port);
    Instant until = Instant.now().plus(Duration.ofSeconds(30));
    while (true) {
      try {
        HttpURLConnection c = (HttpURLConnection) endpoint.resolve("/moto-api/").toURL().openConnection();
        c.setConnectTimeout(500);
        c.getResponseCode();
        break;
      } catch (IOException e) {
        if (!moto.isAlive() || Instant.now().isAfter(until)) {
          throw new IllegalStateException("moto_server did not start; see " + log, e);
        }
        Thread.sleep(100);
      }
    }
    ec2 = Ec2Client.builder().region(Region.US_EAST_1).endpointOverride(endpoint).credentialsProvider(CREDS)
        .httpClient(UrlConnectionHttpClient.create()).build();
    String ami = ec2.describeImages(b -> b.owners("amazon")).images().stream().findFirst()
        .map(i -> i.imageId()).orElse("ami-12c6146b");
    launch(ami, "us-east-1a", "kafka", "prod", 2);
    launch(ami, "us-east-1b", "kafka", "prod", 1);
    launch(ami, "us-east-1a", "kafka", "test", 1);
    launch(ami, "us-east-1c", "cassandra", "prod", 1);
    String stoppedId = launch(ami, "us-east-1c", "kafka", "prod", 1).get(0);
    ec2.stopInstances(b -> b.instanceIds(stoppedId));
  }

  static List<String> launch(String ami, String az, String app, String stage, int n) {
    return ec2.runInstances(b -> b.imageId(ami).minCount(n).maxCount(n).instanceType(InstanceType.T3_MICRO)
            .placement(p -> p.availabilityZone(az))
            .tagSpecifications(TagSpecification.builder().resourceType(ResourceType.INSTANCE)
                .tags(Tag.builder().key("app").value(app).build(), Tag.builder().key("stage").value(stage).build())
                .build()))
        .instances().stream().map(i -> i.instanceId()).toList();
  }

  @AfterAll
  static void stopMoto() throws Exception {
    if (ec2 != null) {
      ec2.close();
    }
    if (moto != null) {
      moto.destroy();
      if (!moto.waitFor(10, TimeUnit.SECONDS)) {
        moto.destroyForcibly();
      }
    }
  }

  @Test
  void runningInstancesMatchingTags() {
    try (Ec2Inventory inv = Ec2Inventory.builder().region("us-east-1").endpointOverride(endpoint).credentials(CREDS)
        .tag("app", "kafka").tag("stage", "prod").port(7000).build()) {
      List<InventoryInstance> found = inv.instances();
      assertEquals(3, found.size(), "3 running kafka/prod instances (the stopped one is left out): " + found);
      for (InventoryInstance i : found) {
        assertTrue(i.id().startsWith("i-"));
        assertFalse(i.address().isEmpty());
        assertEquals(7000, i.port());
        assertEquals("kafka", i.app());
        assertEquals("us-east-1", i.region());
        assertEquals("prod", i.tags().get("stage"));
      }
      assertEquals(2, found.stream().filter(i -> i.availabilityZone().equals("us-east-1a")).count());
      assertEquals(1, found.stream().filter(i -> i.availabilityZone().equals("us-east-1b")).count());
    }
  }

  @Test
  void severalValuesOfATagAndPublicAddresses() {
    try (Ec2Inventory inv = Ec2Inventory.builder().client(ec2).tag("app", "kafka").tag("stage", "prod", "test")
        .address(Ec2Inventory.AddressType.PUBLIC).build()) {
      List<InventoryInstance> found = inv.instances();
      assertEquals(4, found.size());
      List<String> privateIps = Ec2Inventory.builder().client(ec2).tag("app", "kafka").tag("stage", "prod", "test")
          .build().instances().stream().map(InventoryInstance::address).toList();
      for (InventoryInstance i : found) {
        assertNotNull(i.address());
        assertFalse(privateIps.contains(i.address()), "public, not private: " + i.address());
      }
    }
  }

  @Test
  void noMatchIsEmpty() {
    assertTrue(Ec2Inventory.builder().client(ec2).tag("app", "nothing").build().instances().isEmpty());
  }
}
