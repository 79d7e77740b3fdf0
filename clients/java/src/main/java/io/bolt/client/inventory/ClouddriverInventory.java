package io.bolt.client.inventory;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * Instances of a Spinnaker application, from Clouddriver's REST API.
 *
 * <p>{@code GET /applications/{app}/serverGroups} lists the application's server
 * groups (name, account, region, cluster, isDisabled, instances with id/name,
 * availabilityZone and healthState). An instance summary that carries no address
 * is completed with {@code GET /instances/{account}/{region}/{id}}
 * ({@code privateIpAddress} or {@code privateDnsName}; {@code publicIpAddress} or
 * {@code publicDnsName} with {@link Builder#publicAddress}). Disabled server groups
 * are left out unless asked for; accounts, regions, clusters and health
 * ({@code healthState == "Up"}) can be filtered. Any HTTP error is an
 * {@link InventoryException}. The same contract as the Python client's provider.
 */
public final class ClouddriverInventory implements InventoryProvider {
  private final URI base;
  private final String application;
  private final List<String> accounts;
  private final List<String> regions;
  private final List<String> clusters;
  private final boolean includeDisabled;
  private final boolean healthyOnly;
  private final boolean publicAddress;
  private final int port;
  private final Map<String, String> headers;
  private final Duration timeout;
  private final HttpClient http;

  private ClouddriverInventory(Builder b) {
    String u = b.baseUrl.toString();
    this.base = URI.create(u.endsWith("/") ? u : u + "/");
    this.application = Objects.requireNonNull(b.application, "application");
    this.accounts = List.copyOf(b.accounts);
    this.regions = List.copyOf(b.regions);
    this.clusters = List.copyOf(b.clusters);
    this.includeDisabled = b.includeDisabled;
    this.healthyOnly = b.healthyOnly;
    this.publicAddress = b.publicAddress;
    this.port = b.port;
    this.headers = Map.copyOf(b.headers);
    this.timeout = b.timeout;
    this.http = HttpClient.newBuilder().connectTimeout(timeout).build();
  }

  public static Builder builder(URI baseUrl, String application) {
    Builder b = new Builder();
    b.baseUrl = baseUrl;
    b.application = application;
    return b;
  }

  @Override
  public List<InventoryInstance> instances() {
    JsonElement root = get("applications/" + enc(application) + "/serverGroups");
    List<InventoryInstance> out = new ArrayList<>();
    if (!root.isJsonArray()) {
      throw new InventoryException("Clouddriver: serverGroups payload is not a list");
    }
    for (JsonElement sgElem : root.getAsJsonArray()) {
      JsonObject sg = sgElem.getAsJsonObject();
      String account = str(sg, "account");
      String region = str(sg, "region");
      String cluster = str(sg, "cluster");
      if (!includeDisabled && sg.has("isDisabled") && sg.get("isDisabled").getAsBoolean()) {
        continue;
      }
      if (!accounts.isEmpty() && !accounts.contains(account)
          || !regions.isEmpty() && !regions.contains(region)
          || !clusters.isEmpty() && !clusters.contains(cluster)) {
        continue;
      }
      JsonArray instances = sg.has("instances") ? sg.getAsJsonArray("instances") : new JsonArray();
      for (JsonElement iElem : instances) {
        JsonObject i = iElem.getAsJsonObject();
        String id = str(i, "id").isEmpty() ? str(i, "name") : str(i, "id");
        String az = str(i, "availabilityZone");
        if (az.isEmpty()) {
          az = str(i, "zone");
        }
        if (healthyOnly && !"Up".equals(str(i, "healthState"))) {
          continue;
        }
        String address = address(i);
        if (address.isEmpty()) {
          JsonObject detail = get("instances/" + enc(account) + "/" + enc(region) + "/" + enc(id))
              .getAsJsonObject();
          address = address(detail);
          if (az.isEmpty() && detail.has("placement") && detail.get("placement").isJsonObject()) {
            az = str(detail.getAsJsonObject("placement"), "availabilityZone");
          }
        }
        if (address.isEmpty()) {
          continue;
        }
        Map<String, String> tags = new LinkedHashMap<>();
        tags.put("account", account);
        tags.put("cluster", cluster);
        tags.put("serverGroup", str(sg, "name"));
        tags.put("cloudProvider", str(sg, "cloudProvider"));
        tags.put("healthState", str(i, "healthState"));
        out.add(new InventoryInstance(id, address, port, application, az, region, tags));
      }
    }
    return out;
  }

  private String address(JsonObject i) {
    List<String> keys = publicAddress
        ? List.of("publicIpAddress", "publicDnsName")
        : List.of("privateIpAddress", "privateDnsName");
    for (String k : keys) {
      String v = str(i, k);
      if (!v.isEmpty()) {
        return v;
      }
    }
    return "";
  }

  private JsonElement get(String path) {
    HttpRequest.Builder rb = HttpRequest.newBuilder(base.resolve(path))
        .timeout(timeout)
        .header("Accept", "application/json")
        .GET();
    headers.forEach(rb::header);
    try {
      HttpResponse<String> resp = http.send(rb.build(), HttpResponse.BodyHandlers.ofString());
      if (resp.statusCode() / 100 != 2) {
        throw new InventoryException("Clouddriver GET " + base.resolve(path) + ": HTTP " + resp.statusCode());
      }
      return JsonParser.parseString(resp.body());
    } catch (IOException | com.google.gson.JsonParseException e) {
      throw new InventoryException("Clouddriver GET " + base.resolve(path) + ": " + e.getMessage(), e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new InventoryException("interrupted", e);
    }
  }

  private static String enc(String s) {
    return URLEncoder.encode(s, StandardCharsets.UTF_8).replace("+", "%20");
  }

  private static String str(JsonObject o, String key) {
    JsonElement v = o.get(key);
    return v == null || v.isJsonNull() || !v.isJsonPrimitive() ? "" : v.getAsString();
  }

  public static final class Builder {
    private URI baseUrl;
    private String application;
    private final List<String> accounts = new ArrayList<>();
    private final List<String> regions = new ArrayList<>();
    private final List<String> clusters = new ArrayList<>();
    private boolean includeDisabled;
    private boolean healthyOnly;
    private boolean publicAddress;
    private int port = InventoryInstance.DEFAULT_PORT;
    private final Map<String, String> headers = new LinkedHashMap<>();
    private Duration timeout = Duration.ofSeconds(30);

    public Builder account(String... names) {
      accounts.addAll(List.of(names));
      return this;
    }

    public Builder region(String... names) {
      regions.addAll(List.of(names));
      return this;
    }

    public Builder cluster(String... names) {
      clusters.addAll(List.of(names));
      return this;
    }

    /** Only instances whose {@code healthState} is {@code Up}. */
    public Builder healthyOnly(boolean healthy) {
      this.healthyOnly = healthy;
      return this;
    }

    public Builder includeDisabled(boolean include) {
      this.includeDisabled = include;
      return this;
    }

    /** Dial public addresses instead of private ones. */
    public Builder publicAddress(boolean usePublic) {
      this.publicAddress = usePublic;
      return this;
    }

    public Builder port(int port) {
      this.port = port;
      return this;
    }

    /** An HTTP header on every request (e.g. {@code X-SPINNAKER-USER}). */
    public Builder header(String name, String value) {
      headers.put(name, value);
      return this;
    }

    public Builder timeout(Duration timeout) {
      this.timeout = timeout;
      return this;
    }

    public ClouddriverInventory build() {
      return new ClouddriverInventory(this);
    }
  }
}
