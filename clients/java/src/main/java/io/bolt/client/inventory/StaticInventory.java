package io.bolt.client.inventory;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.bolt.client.HostPort;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A fixed list of instances, given in code or read from a JSON file.
 *
 * <p>The file is either a list of instances or an object with an {@code
 * instances} list, read again at each call. Each instance is an object with
 * {@code id} (or {@code instance_id}) and {@code address} (or {@code host}; one of
 * id and address is required, each defaults to the other; {@code address} may
 * carry a port, {@code "10.0.0.5:7443"}), and
 * optionally {@code port}, {@code app}, {@code availability_zone} (or {@code az}),
 * {@code region} (derived from the zone when absent) and {@code tags} (an object
 * of strings). A bare string is an address that is also the id. Ids must be
 * unique. The same format as the Python client's (which also reads YAML).
 */
public final class StaticInventory implements InventoryProvider {
  private final List<InventoryInstance> instances;
  private final Path file;

  private StaticInventory(List<InventoryInstance> instances) {
    this.instances = List.copyOf(instances);
    this.file = null;
  }

  private StaticInventory(Path file) {
    this.instances = List.of();
    this.file = file;
  }

  public static StaticInventory of(List<InventoryInstance> instances) {
    return new StaticInventory(instances);
  }

  public static StaticInventory of(InventoryInstance... instances) {
    return new StaticInventory(List.of(instances));
  }

  /** A JSON file, read again at each {@link #instances()} call (inventory on demand). */
  public static StaticInventory fromJsonFile(Path file) {
    return new StaticInventory(file);
  }

  public static StaticInventory fromJson(String json) {
    return new StaticInventory(parseAll(json, "inventory"));
  }

  private static List<InventoryInstance> parseAll(String json, String what) {
    JsonElement root;
    try {
      root = JsonParser.parseString(json);
    } catch (com.google.gson.JsonParseException e) {
      throw new InventoryException(what + ": " + e.getMessage(), e);
    }
    JsonArray list;
    if (root.isJsonArray()) {
      list = root.getAsJsonArray();
    } else if (root.isJsonObject() && root.getAsJsonObject().has("instances")) {
      list = root.getAsJsonObject().getAsJsonArray("instances");
    } else {
      throw new InventoryException(what + ": expected a list of instances (or {\"instances\": [...]})");
    }
    List<InventoryInstance> out = new ArrayList<>();
    java.util.Set<String> ids = new java.util.HashSet<>();
    for (JsonElement e : list) {
      InventoryInstance i = parse(e);
      if (!ids.add(i.id())) {
        throw new InventoryException(what + ": duplicate instance id " + i.id());
      }
      out.add(i);
    }
    return out;
  }

  /** One instance entry in the file format above (also what {@link InventoryInstance#toJson()} writes). */
  public static InventoryInstance parse(JsonElement e) {
    if (e.isJsonPrimitive()) {
      HostPort hp = HostPort.parse(e.getAsString(), InventoryInstance.DEFAULT_PORT);
      return new InventoryInstance(e.getAsString(), hp.host(), hp.port(), "", "", "");
    }
    JsonObject o = e.getAsJsonObject();
    String address = str(o, "address");
    if (address.isEmpty()) {
      address = str(o, "host");
    }
    if (address.isEmpty()) {
      address = str(o, "id");
    }
    if (address.isEmpty()) {
      throw new InventoryException("instance entry needs an address or id: " + o);
    }
    HostPort hp = HostPort.parse(address, InventoryInstance.DEFAULT_PORT);
    int port = o.has("port") ? o.get("port").getAsInt() : hp.port();
    String id = str(o, "id");
    if (id.isEmpty()) {
      id = str(o, "instance_id");
    }
    Map<String, String> tags = new LinkedHashMap<>();
    if (o.has("tags") && o.get("tags").isJsonObject()) {
      for (Map.Entry<String, JsonElement> t : o.getAsJsonObject("tags").entrySet()) {
        tags.put(t.getKey(), t.getValue().getAsString());
      }
    }
    String az = str(o, "availability_zone");
    if (az.isEmpty()) {
      az = str(o, "az");
    }
    String region = str(o, "region");
    return new InventoryInstance(id.isEmpty() ? address : id, hp.host(), port, str(o, "app"), az,
        region.isEmpty() ? InventoryInstance.regionOf(az) : region, tags);
  }

  private static String str(JsonObject o, String key) {
    JsonElement v = o.get(key);
    return v == null || v.isJsonNull() ? "" : v.getAsString();
  }

  @Override
  public List<InventoryInstance> instances() {
    if (file == null) {
      return instances;
    }
    try {
      return parseAll(Files.readString(file), "inventory " + file);
    } catch (IOException e) {
      throw new InventoryException("cannot read inventory " + file + ": " + e.getMessage(), e);
    }
  }
}
