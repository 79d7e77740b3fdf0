package io.bolt.client.inventory;

import java.util.Map;
import java.util.Objects;

/**
 * One instance of a fleet, as an inventory provider found it: where to reach its
 * agent and the labels orchestration groups by. Not to be confused with the
 * generated {@code io.bolt.v1.Instance}, the labels an agent reports about itself
 * in {@code AgentInfo}; the distinct name lets code import both.
 *
 * @param id instance id (e.g. {@code i-0abc...})
 * @param address host name or IP address of the agent
 * @param port agent port (7443 unless the inventory says otherwise)
 * @param app application the instance belongs to; empty when unknown
 * @param availabilityZone e.g. {@code us-east-1a}; empty when unknown
 * @param region e.g. {@code us-east-1}; empty when unknown. Kept as given:
 *     StaticInventory and Ec2Inventory fill it in from the zone ({@link #regionOf})
 * @param tags anything else the provider knows (EC2 tags, Clouddriver fields)
 */
public record InventoryInstance(String id, String address, int port, String app, String availabilityZone,
    String region, Map<String, String> tags) {
  public static final int DEFAULT_PORT = 7443;

  public InventoryInstance {
    Objects.requireNonNull(id, "id");
    Objects.requireNonNull(address, "address");
    app = app == null ? "" : app;
    availabilityZone = availabilityZone == null ? "" : availabilityZone;
    // Not derived from the zone here: an instance without a region groups as
    // "(unknown)" under the REGION strategy, as in the Python client.
    region = region == null ? "" : region;
    tags = tags == null ? Map.of() : Map.copyOf(tags);
  }

  public InventoryInstance(String id, String address, int port, String app, String availabilityZone, String region) {
    this(id, address, port, app, availabilityZone, region, Map.of());
  }

  /**
   * The JSON form shared with the Python client ({@code Instance.to_dict}): id,
   * address as "host:port", app, availability_zone, region, tags.
   */
  public com.google.gson.JsonObject toJson() {
    com.google.gson.JsonObject o = new com.google.gson.JsonObject();
    o.addProperty("id", id);
    o.addProperty("address", target());
    o.addProperty("app", app);
    o.addProperty("availability_zone", availabilityZone);
    o.addProperty("region", region);
    com.google.gson.JsonObject t = new com.google.gson.JsonObject();
    tags.forEach(t::addProperty);
    o.add("tags", t);
    return o;
  }

  /** Reads {@link #toJson()}'s form (or any static inventory entry). */
  public static InventoryInstance fromJson(com.google.gson.JsonElement json) {
    return StaticInventory.parse(json);
  }

  /** "host:port" for dialling. */
  public String target() {
    return (address.contains(":") ? "[" + address + "]" : address) + ":" + port;
  }

  /** The region of an AWS-style zone name: {@code us-east-1a} → {@code us-east-1}. */
  public static String regionOf(String availabilityZone) {
    if (availabilityZone == null || availabilityZone.isEmpty()) {
      return "";
    }
    int end = availabilityZone.length();
    while (end > 0 && Character.isLetter(availabilityZone.charAt(end - 1))) {
      end--;
    }
    return end > 0 && end < availabilityZone.length() ? availabilityZone.substring(0, end) : "";
  }
}
