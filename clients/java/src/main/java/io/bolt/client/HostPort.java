package io.bolt.client;

/** A host and port parsed from "host", "host:port" or "[v6]:port". */
public record HostPort(String host, int port) {
  public static HostPort parse(String s, int defaultPort) {
    s = s.trim();
    if (s.startsWith("[")) {
      int close = s.indexOf(']');
      String h = s.substring(1, close);
      String rest = s.substring(close + 1);
      return new HostPort(h, rest.startsWith(":") ? Integer.parseInt(rest.substring(1)) : defaultPort);
    }
    int colon = s.lastIndexOf(':');
    if (colon > 0 && s.indexOf(':') == colon) {
      return new HostPort(s.substring(0, colon), Integer.parseInt(s.substring(colon + 1)));
    }
    return new HostPort(s, defaultPort);
  }

  @Override
  public String toString() {
    return host.contains(":") ? "[" + host + "]:" + port : host + ":" + port;
  }
}
