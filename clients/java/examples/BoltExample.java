// A short tour of the Java client: one agent, live output, then a rollout.
//
//   make -C clients/java example ARGS="TLS_DIR 127.0.0.1:7443 [HOST:PORT ...]"
//
// TLS_DIR holds ca.crt, client.crt and client.key (bolt-agent certs init --dir TLS_DIR).
import io.bolt.client.BoltClient;
import io.bolt.client.BoltException;
import io.bolt.client.HostPort;
import io.bolt.client.RunResult;
import io.bolt.client.fleet.FailureBudget;
import io.bolt.client.fleet.Fleet;
import io.bolt.client.fleet.FleetReport;
import io.bolt.client.fleet.RolloutOptions;
import io.bolt.client.fleet.Strategy;
import io.bolt.client.fleet.Task;
import io.bolt.client.inventory.InventoryInstance;
import io.bolt.v1.AgentInfo;
import io.bolt.v1.ExecuteRequest;
import io.bolt.v1.Instance;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

public class BoltExample {
  public static void main(String[] args) {
    if (args.length < 2) {
      System.err.println("usage: BoltExample TLS_DIR HOST:PORT [HOST:PORT ...]");
      return;
    }
    Path tls = Path.of(args[0]);
    HostPort first = HostPort.parse(args[1], BoltClient.DEFAULT_PORT);

    // One agent: who is it, and run an action with its output printed live.
    try (BoltClient client = BoltClient.newBuilder()
        .target(first.host(), first.port())
        .trustCa(tls.resolve("ca.crt"))
        .keyManager(tls.resolve("client.crt"), tls.resolve("client.key"))
        .deadline(Duration.ofSeconds(10))
        .build()) {
      AgentInfo info = client.agentInfo();
      System.out.printf("agent %s on %s (%s), %d packs%n", info.getVersion(),
          info.getInstance().getInstanceId(), info.getInstance().getAvailabilityZone(), info.getPacksCount());
      RunResult r = client.run(
          ExecuteRequest.newBuilder().setPack("demo").setAction("progress")
              .putArgs("seconds", "3").build(),
          chunk -> System.out.print(chunk.getData().toStringUtf8()), 1 << 20);
      System.out.printf("%s ended %s%n", r.executionId(), r.state());
    } catch (BoltException e) {
      System.err.println("call failed (" + e.code() + "): " + e.getMessage());
      return;
    }

    // A fleet: one availability zone at a time, stop at the second error.
    List<InventoryInstance> inventory = new ArrayList<>();
    for (int i = 1; i < args.length; i++) {
      HostPort hp = HostPort.parse(args[i], BoltClient.DEFAULT_PORT);
      try (BoltClient c = BoltClient.newBuilder().target(hp.host(), hp.port()).tlsDir(tls).build()) {
        Instance inst = c.agentInfo().getInstance(); // labels straight from each agent
        inventory.add(new InventoryInstance(inst.getInstanceId(), hp.host(), hp.port(), inst.getApp(),
            inst.getAvailabilityZone(), inst.getRegion()));
      }
    }
    try (Fleet fleet = Fleet.withTlsDir(tls)) {
      FleetReport report = fleet.run(inventory,
          Task.of("disk-usage", "top-dirs", Map.of("path", "/tmp", "count", "3")),
          RolloutOptions.builder().strategy(Strategy.AZ).maxErrors(FailureBudget.count(1)).healthGate(true).build());
      System.out.print(report.table());
    }
  }
}
