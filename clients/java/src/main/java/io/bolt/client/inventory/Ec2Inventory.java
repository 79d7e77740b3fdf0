package io.bolt.client.inventory;

import java.net.URI;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import software.amazon.awssdk.auth.credentials.AwsCredentialsProvider;
import software.amazon.awssdk.http.urlconnection.UrlConnectionHttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.ec2.Ec2Client;
import software.amazon.awssdk.services.ec2.Ec2ClientBuilder;
import software.amazon.awssdk.services.ec2.model.DescribeInstancesRequest;
import software.amazon.awssdk.services.ec2.model.Filter;
import software.amazon.awssdk.services.ec2.model.Reservation;
import software.amazon.awssdk.services.ec2.model.Tag;

/**
 * Instances from EC2 DescribeInstances (AWS SDK for Java v2), filtered by tags,
 * running instances only. The app comes from a tag ({@code app} by default), the
 * zone from the placement, the region from the client. Instances without the
 * chosen address (private IP; or public IP, else public DNS name) are left out.
 * API failures are {@link InventoryException}s.
 */
public final class Ec2Inventory implements InventoryProvider, AutoCloseable {
  /** Which address of an instance its agent is dialled at. */
  public enum AddressType { PRIVATE, PUBLIC }

  private final Ec2Client ec2;
  private final boolean ownsClient;
  private final Map<String, List<String>> tagFilters;
  private final List<Filter> extraFilters;
  private final AddressType addressType;
  private final String appTag;
  private final int port;
  private final String region;

  private Ec2Inventory(Builder b) {
    this.ownsClient = b.client == null;
    if (b.client != null) {
      this.ec2 = b.client;
    } else {
      Ec2ClientBuilder cb = Ec2Client.builder().httpClient(UrlConnectionHttpClient.create());
      if (b.region != null) {
        cb.region(Region.of(b.region));
      }
      if (b.endpoint != null) {
        cb.endpointOverride(b.endpoint);
      }
      if (b.credentials != null) {
        cb.credentialsProvider(b.credentials);
      }
      this.ec2 = cb.build();
    }
    this.tagFilters = new LinkedHashMap<>(b.tagFilters);
    this.extraFilters = List.copyOf(b.filters);
    this.addressType = b.addressType;
    this.appTag = b.appTag;
    this.port = b.port;
    this.region = b.region != null ? b.region
        : ec2.serviceClientConfiguration().region() == null ? ""
        : ec2.serviceClientConfiguration().region().id();
  }

  public static Builder builder() {
    return new Builder();
  }

  @Override
  public List<InventoryInstance> instances() {
    List<Filter> filters = new ArrayList<>();
    filters.add(Filter.builder().name("instance-state-name").values("running").build());
    tagFilters.forEach((k, v) -> filters.add(Filter.builder().name("tag:" + k).values(v).build()));
    filters.addAll(extraFilters);
    DescribeInstancesRequest req = DescribeInstancesRequest.builder().filters(filters).build();
    List<InventoryInstance> out = new ArrayList<>();
    try {
      collect(req, out);
    } catch (software.amazon.awssdk.core.exception.SdkException e) {
      throw new InventoryException("EC2 DescribeInstances failed: " + e.getMessage(), e);
    }
    return out;
  }

  private void collect(DescribeInstancesRequest req, List<InventoryInstance> out) {
    for (Reservation r : ec2.describeInstancesPaginator(req).reservations()) {
      for (software.amazon.awssdk.services.ec2.model.Instance i : r.instances()) {
        String address = addressType == AddressType.PUBLIC
            ? firstNonEmpty(i.publicIpAddress(), i.publicDnsName())
            : i.privateIpAddress();
        if (address == null || address.isEmpty()) {
          continue;
        }
        Map<String, String> tags = new LinkedHashMap<>();
        for (Tag t : i.tags()) {
          tags.put(t.key(), t.value());
        }
        String az = i.placement() == null ? "" : i.placement().availabilityZone();
        String reg = region.isEmpty() ? InventoryInstance.regionOf(az) : region;
        out.add(new InventoryInstance(i.instanceId(), address, port, tags.getOrDefault(appTag, ""), az, reg, tags));
      }
    }
  }

  private static String firstNonEmpty(String a, String b) {
    return a != null && !a.isEmpty() ? a : b;
  }

  /** Closes the EC2 client when this inventory built it. */
  @Override
  public void close() {
    if (ownsClient) {
      ec2.close();
    }
  }

  public static final class Builder {
    private Ec2Client client;
    private String region;
    private URI endpoint;
    private AwsCredentialsProvider credentials;
    private final Map<String, List<String>> tagFilters = new LinkedHashMap<>();
    private final List<Filter> filters = new ArrayList<>();
    private AddressType addressType = AddressType.PRIVATE;
    private String appTag = "app";
    private int port = InventoryInstance.DEFAULT_PORT;

    /** Use this client (its region and credentials); otherwise one is built from the settings below. */
    public Builder client(Ec2Client client) {
      this.client = client;
      return this;
    }

    public Builder region(String region) {
      this.region = region;
      return this;
    }

    /** Another EC2-compatible endpoint (tests: moto in server mode). */
    public Builder endpointOverride(URI endpoint) {
      this.endpoint = endpoint;
      return this;
    }

    public Builder credentials(AwsCredentialsProvider credentials) {
      this.credentials = credentials;
      return this;
    }

    /** Only instances whose tag {@code key} has one of {@code values}. */
    public Builder tag(String key, String... values) {
      tagFilters.put(Objects.requireNonNull(key), List.of(values));
      return this;
    }

    /** Any other DescribeInstances filter. */
    public Builder filter(String name, String... values) {
      filters.add(Filter.builder().name(name).values(values).build());
      return this;
    }

    public Builder address(AddressType type) {
      this.addressType = Objects.requireNonNull(type);
      return this;
    }

    /** Tag holding the instance's app (default {@code app}). */
    public Builder appTag(String appTag) {
      this.appTag = Objects.requireNonNull(appTag);
      return this;
    }

    public Builder port(int port) {
      this.port = port;
      return this;
    }

    public Ec2Inventory build() {
      return new Ec2Inventory(this);
    }
  }
}
