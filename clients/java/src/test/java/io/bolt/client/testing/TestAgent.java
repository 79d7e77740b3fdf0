package io.bolt.client.testing;

import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.bolt.client.BoltClient;
import io.bolt.client.inventory.InventoryInstance;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * One real {@code bolt-agent run} process with its own state folder (config,
 * packs with a copy of integration/packs/bolt-test, data, log). State folders
 * live under target/test-agents/ and are kept after the run for inspection.
 */
public final class TestAgent implements AutoCloseable {
  private static final AtomicInteger SEQ = new AtomicInteger();
  /** Agents still running when the test JVM exits (a crash, a forgotten close) are stopped. */
  private static final java.util.Set<Process> LIVE = java.util.concurrent.ConcurrentHashMap.newKeySet();

  static {
    Runtime.getRuntime().addShutdownHook(new Thread(() -> LIVE.forEach(Process::destroyForcibly)));
  }

  public final String id;
  public final String availabilityZone;
  public final String region;
  public final Path root;
  public final Path tlsDir;
  public final Path packsDir;
  public final Path dataDir;
  public final Path log;
  private Process process;
  private int port;

  private TestAgent(String id, String az, String region, Path tlsDir) {
    this.id = id;
    this.availabilityZone = az;
    this.region = region;
    this.tlsDir = tlsDir;
    this.root = stateRoot().resolve(id + "-" + ProcessHandle.current().pid() + "-" + SEQ.incrementAndGet());
    this.packsDir = root.resolve("packs");
    this.dataDir = root.resolve("data");
    this.log = root.resolve("agent.log");
  }

  // ------------------------------------------------------------------ environment

  public static Path agentBin() {
    String p = System.getProperty("bolt.agent.bin", "");
    if (p.isBlank()) {
      p = System.getenv().getOrDefault("BOLT_AGENT_BIN", "");
    }
    if (p.isBlank()) {
      p = repoRoot().resolve("target/debug/bolt-agent").toString();
    }
    return Paths.get(p).toAbsolutePath().normalize();
  }

  public static Path repoRoot() {
    String p = System.getProperty("bolt.repo.root", "");
    return (p.isBlank() ? Paths.get("../..") : Paths.get(p)).toAbsolutePath().normalize();
  }

  static Path stateRoot() {
    return Paths.get("target", "test-agents").toAbsolutePath();
  }

  /** Skips the calling test when the agent binary is missing, unless bolt.require.agent=true. */
  public static void assumeAgent() {
    boolean present = Files.isExecutable(agentBin());
    if (!present && Boolean.parseBoolean(System.getProperty("bolt.require.agent", "false"))) {
      fail("bolt-agent not found at " + agentBin() + " (set BOLT_AGENT_BIN)");
    }
    assumeTrue(present, "bolt-agent not found at " + agentBin());
  }

  /** {@code bolt-agent certs init --dir DIR}: a CA plus agent and client certificates. */
  public static Path initCerts(String name) {
    Path dir = stateRoot().resolve("certs-" + name + "-" + ProcessHandle.current().pid() + "-" + SEQ.incrementAndGet());
    try {
      Files.createDirectories(dir.getParent());
      runTool(List.of(agentBin().toString(), "certs", "init", "--dir", dir.toString()));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return dir;
  }

  static void runTool(List<String> cmd) {
    try {
      Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0) {
        throw new IllegalStateException(String.join(" ", cmd) + " failed:\n" + out);
      }
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  // ------------------------------------------------------------------ life cycle

  /** Prepares and starts an agent labelled with the given instance id, zone and region. */
  public static TestAgent start(String id, String az, String region, Path tlsDir) {
    TestAgent a = prepare(id, az, region, tlsDir);
    a.start();
    return a;
  }

  /** Writes the agent's config and packs without starting it. */
  public static TestAgent prepare(String id, String az, String region, Path tlsDir) {
    TestAgent a = new TestAgent(id, az, region, tlsDir);
    try {
      Files.createDirectories(a.packsDir);
      Files.createDirectories(a.dataDir);
      copyTree(repoRoot().resolve("integration/packs/bolt-test"), a.packsDir.resolve("bolt-test"));
      Files.writeString(a.root.resolve("agent.toml"), String.join("\n",
          "[instance]",
          "id = \"" + id + "\"",
          "app = \"scenario\"",
          "availability_zone = \"" + az + "\"",
          "region = \"" + region + "\"",
          "stage = \"prod\"",
          ""));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return a;
  }

  /** Starts the agent: on a free port the first time, on the same port after a stop. */
  public void start() {
    Path addr = dataDir.resolve("agent.addr");
    try {
      Files.deleteIfExists(addr);
      process = new ProcessBuilder(agentBin().toString(), "run",
          "--config", root.resolve("agent.toml").toString(),
          "--listen", "127.0.0.1:" + port,
          "--tls-dir", tlsDir.toString(),
          "--packs-dir", packsDir.toString(),
          "--data-dir", dataDir.toString())
          .redirectErrorStream(true)
          .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile()))
          .start();
      LIVE.add(process);
      Instant until = Instant.now().plus(Duration.ofSeconds(30));
      while (true) {
        if (Files.exists(addr)) {
          String text = Files.readString(addr).trim();
          if (text.contains(":") && !text.endsWith(":")) {
            port = Integer.parseInt(text.substring(text.lastIndexOf(':') + 1));
            return;
          }
        }
        if (!process.isAlive()) {
          throw new IllegalStateException("bolt-agent exited with " + process.exitValue() + ":\n" + logText());
        }
        if (Instant.now().isAfter(until)) {
          throw new IllegalStateException("bolt-agent wrote no " + addr + " within 30 s:\n" + logText());
        }
        Thread.sleep(20);
      }
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  /** Stops and starts the agent again on the same port (running actions go on). */
  public void restart() {
    stop();
    start();
  }

  /** SIGTERM, then SIGKILL after 10 s. The port stays recorded (a stopped agent refuses it). */
  public void stop() {
    if (process == null) {
      return;
    }
    process.destroy();
    LIVE.remove(process);
    try {
      if (!process.waitFor(10, TimeUnit.SECONDS)) {
        process.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    process = null;
  }

  public boolean running() {
    return process != null && process.isAlive();
  }

  /** Makes {@code bolt-test/scenario} exit 1 on this agent. */
  public void makeFail() {
    try {
      Files.writeString(packsDir.resolve("bolt-test/FAIL"), "");
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  public int port() {
    return port;
  }

  public InventoryInstance instance() {
    return new InventoryInstance(id, "127.0.0.1", port, "scenario", availabilityZone, region);
  }

  /** A client with the shared client certificate. */
  public BoltClient client() {
    return BoltClient.newBuilder().target("127.0.0.1", port).tlsDir(tlsDir).deadline(Duration.ofSeconds(10)).build();
  }

  public String logText() {
    try {
      return Files.exists(log) ? Files.readString(log) : "(no log)";
    } catch (IOException e) {
      return "(log unreadable: " + e + ")";
    }
  }

  @Override
  public void close() {
    stop();
  }

  private static void copyTree(Path from, Path to) throws IOException {
    Files.walkFileTree(from, new SimpleFileVisitor<>() {
      @Override
      public FileVisitResult preVisitDirectory(Path dir, BasicFileAttributes attrs) throws IOException {
        Files.createDirectories(to.resolve(from.relativize(dir).toString()));
        return FileVisitResult.CONTINUE;
      }

      @Override
      public FileVisitResult visitFile(Path file, BasicFileAttributes attrs) throws IOException {
        Files.copy(file, to.resolve(from.relativize(file).toString()), StandardCopyOption.COPY_ATTRIBUTES,
            StandardCopyOption.REPLACE_EXISTING);
        return FileVisitResult.CONTINUE;
      }
    });
  }
}
