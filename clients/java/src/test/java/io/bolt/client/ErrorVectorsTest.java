package io.bolt.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.bolt.client.testing.TestAgent;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.Arrays;
import java.util.EnumSet;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import java.util.stream.StreamSupport;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * The status -> exception map shared with the Python client
 * (integration/scenarios/helpers/errors.json): type, family, fields, message and
 * retryability of every vector. Pure logic, no agent.
 */
class ErrorVectorsTest {
  static final JsonObject VECTORS = load();

  static JsonObject load() {
    try {
      return JsonParser.parseString(Files.readString(
          TestAgent.repoRoot().resolve("integration/scenarios/helpers/errors.json"), StandardCharsets.UTF_8))
          .getAsJsonObject();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** A class of the tree by its simple name (BoltException or one of its nested classes). */
  static Class<?> boltClass(String simpleName) {
    if (simpleName.equals(BoltException.class.getSimpleName())) {
      return BoltException.class;
    }
    return Arrays.stream(BoltException.class.getClasses()).filter(c -> c.getSimpleName().equals(simpleName))
        .findFirst().orElseThrow(() -> new AssertionError("no class " + simpleName + " in BoltException"));
  }

  static Stream<JsonObject> vectors() {
    return StreamSupport.stream(VECTORS.getAsJsonArray("vectors").spliterator(), false)
        .map(JsonElement::getAsJsonObject);
  }

  @TestFactory
  Stream<DynamicTest> everyVector() {
    JsonObject families = VECTORS.getAsJsonObject("families");
    return vectors().map(v -> DynamicTest.dynamicTest(v.get("code").getAsString() + " " + v.get("details"), () -> {
      Status.Code code = Status.Code.valueOf(v.get("code").getAsString());
      String target = v.get("target").getAsString();
      String method = v.get("method").getAsString();
      String details = v.get("details").getAsString();
      StatusRuntimeException ex = Status.fromCode(code).withDescription(details).asRuntimeException();

      BoltException e = Errors.from(ex, target, method);

      assertEquals(v.get("java").getAsString(), e.getClass().getSimpleName());
      String family = families.getAsJsonObject(v.get("family").getAsString()).get("java").getAsString();
      assertInstanceOf(boltClass(family), e);
      assertEquals(code, e.code());
      assertEquals(target, e.target());
      assertEquals(method, e.method());
      assertEquals(details, e.details());
      assertEquals(v.get("message").getAsString(), e.getMessage());
      assertEquals(v.get("retryable").getAsBoolean(), RetryPolicy.retryable(e));
      assertEquals(ex, e.getCause());
    }));
  }

  @Test
  void everyStatusCodeButOkHasAVector() {
    Set<Status.Code> covered = vectors().map(v -> Status.Code.valueOf(v.get("code").getAsString()))
        .collect(Collectors.toCollection(() -> EnumSet.noneOf(Status.Code.class)));
    assertEquals(EnumSet.complementOf(EnumSet.of(Status.Code.OK)), covered);
  }

  @Test
  void theTreeIsTheSharedOne() {
    JsonObject tls = VECTORS.getAsJsonObject("tls");
    Class<?> base = boltClass(VECTORS.getAsJsonObject("base").get("java").getAsString());
    assertEquals(BoltException.class, base);
    for (String f : VECTORS.getAsJsonObject("families").keySet()) {
      Class<?> family = boltClass(VECTORS.getAsJsonObject("families").getAsJsonObject(f).get("java").getAsString());
      assertEquals(base, family.getSuperclass(), f);
    }
    Class<?> tlsClass = boltClass(tls.get("java").getAsString());
    assertEquals(boltClass(tls.getAsJsonObject("parent").get("java").getAsString()), tlsClass.getSuperclass());
    BoltException e = Errors.from(Status.UNAVAILABLE.withCause(new javax.net.ssl.SSLHandshakeException("x"))
        .asRuntimeException(), "a:1", "Health");
    assertEquals(tlsClass, e.getClass());
    assertEquals(tls.get("retryable").getAsBoolean(), RetryPolicy.retryable(e));
    assertTrue(e.getMessage().startsWith("a:1: Health failed: UNAVAILABLE: TLS handshake failed: x"), e.getMessage());
  }
}
