package io.bolt.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import java.net.ConnectException;
import java.security.cert.CertificateException;
import java.util.concurrent.CompletionException;
import javax.net.ssl.SSLHandshakeException;
import org.junit.jupiter.api.Test;

/** Errors.from beyond the shared vectors (ErrorVectorsTest): causes, TLS by type, wrappers. */
class ErrorsTest {
  static final String TARGET = "agent-1.example:7443";

  @Test
  void tlsFailuresAreTlsExceptionsNotRetried() {
    BoltException e = Errors.from(Status.UNAVAILABLE.withCause(new SSLHandshakeException("bad certificate"))
        .asRuntimeException(), TARGET, "Health");
    assertInstanceOf(BoltException.TlsException.class, e);
    assertInstanceOf(BoltException.UnavailableException.class, e);
    assertEquals(Status.Code.UNAVAILABLE, e.code());
    assertFalse(RetryPolicy.retryable(e));
    assertEquals(TARGET + ": Health failed: UNAVAILABLE: " + e.details(), e.getMessage());
    assertTrue(e.details().startsWith("TLS handshake failed: bad certificate;"), e.details());
    assertTrue(e.getMessage().contains("signed by the configured CA"), e.getMessage());
  }

  @Test
  void tlsIsRecognisedByTypeNotByWords() {
    // Words of a TLS failure, but no TLS exception anywhere: an ordinary outage.
    BoltException words = Errors.from(Status.UNAVAILABLE.withDescription("TLS handshake alert: certificate required")
        .withCause(new ConnectException("handshake alert ssl")).asRuntimeException(), "tls-handshake.example:7443",
        "Health");
    assertEquals(BoltException.UnavailableException.class, words.getClass());
    assertTrue(RetryPolicy.retryable(words));
    assertNull(Errors.tlsFailure(new java.io.IOException("tls alert: certificate required",
        new ConnectException("SSL handshake_failure"))));
    // A certificate check failing deep in the chain, with a plain description: TLS.
    BoltException deep = Errors.from(Status.UNAVAILABLE.withDescription("io exception")
        .withCause(new RuntimeException("wrapped", new CertificateException("signature check failed")))
        .asRuntimeException(), TARGET, "Execute");
    assertEquals(BoltException.TlsException.class, deep.getClass());
    assertTrue(deep.details().startsWith("TLS handshake failed: signature check failed;"), deep.details());
  }

  @Test
  void grpcsGenericIoExceptionIsReplacedByWhatHappened() {
    BoltException e = Errors.from(Status.UNAVAILABLE.withDescription("io exception")
        .withCause(new RuntimeException("annotated", new ConnectException("Connection refused: localhost/127.0.0.1:1")))
        .asRuntimeException(), "localhost:1", "Health");
    assertEquals("Connection refused: localhost/127.0.0.1:1", e.details());
    assertEquals("localhost:1: Health failed: UNAVAILABLE: Connection refused: localhost/127.0.0.1:1", e.getMessage());
  }

  @Test
  void multiLineTlsFailuresBecomeOneLine() {
    // grpc-java appends the netty pipeline to "io exception" on TLS failures.
    BoltException e = Errors.from(Status.UNAVAILABLE
        .withDescription("io exception\nChannel Pipeline: [SslHandler#0, ProtocolNegotiators$ClientTlsHandler#0]")
        .withCause(new SSLHandshakeException("General problem")
            .initCause(new CertificateException("PKIX path validation failed:\n signature check failed")))
        .asRuntimeException(), TARGET, "Health");
    assertInstanceOf(BoltException.TlsException.class, e);
    assertFalse(e.getMessage().contains("\n"), e.getMessage());
    assertFalse(e.getMessage().contains("Pipeline"), e.getMessage());
    assertTrue(e.getMessage().contains("PKIX path validation failed: signature check failed"), e.getMessage());
  }

  @Test
  void theAgentsOwnWordsAreKept() {
    BoltException e = Errors.from(Status.INVALID_ARGUMENT.withDescription("arg count: must be >= 1")
        .asRuntimeException(), TARGET, "Execute");
    assertEquals("arg count: must be >= 1", e.details());
    BoltException none = Errors.from(Status.INTERNAL.asRuntimeException(), TARGET, "Kill");
    assertEquals(TARGET + ": Kill failed: INTERNAL: ", none.getMessage());
  }

  @Test
  void unwrapsFutureWrappersAndKeepsBoltExceptions() {
    BoltException e = Errors.from(new CompletionException(Status.NOT_FOUND.asRuntimeException()), TARGET,
        "GetExecution");
    assertInstanceOf(BoltException.NotFoundException.class, e);
    assertEquals("GetExecution", e.method());
    assertSame(e, Errors.from(new CompletionException(e), "other:1", "Kill"));
  }

  @Test
  void anythingElseIsAServerErrorNamingItsCause() {
    BoltException e = Errors.from(new IllegalStateException("channel shut down"), TARGET, "Execute");
    assertEquals(BoltException.ServerException.class, e.getClass());
    assertEquals(Status.Code.UNKNOWN, e.code());
    assertEquals("channel shut down", e.details());
  }
}
