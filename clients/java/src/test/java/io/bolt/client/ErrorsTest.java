package io.bolt.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import java.util.concurrent.CompletionException;
import javax.net.ssl.SSLHandshakeException;
import org.junit.jupiter.api.Test;

class ErrorsTest {
  @Test
  void everyDocumentedCodeHasItsType() {
    assertInstanceOf(BoltException.UnavailableException.class, Errors.from(Status.UNAVAILABLE.asRuntimeException()));
    assertInstanceOf(BoltException.DeadlineExceededException.class,
        Errors.from(Status.DEADLINE_EXCEEDED.asRuntimeException()));
    assertInstanceOf(BoltException.InvalidArgumentException.class,
        Errors.from(Status.INVALID_ARGUMENT.withDescription("bad").asRuntimeException()));
    assertInstanceOf(BoltException.NotFoundException.class, Errors.from(Status.NOT_FOUND.asRuntimeException()));
    assertInstanceOf(BoltException.PermissionDeniedException.class,
        Errors.from(Status.PERMISSION_DENIED.asRuntimeException()));
    assertInstanceOf(BoltException.AlreadyExistsException.class,
        Errors.from(Status.ALREADY_EXISTS.asRuntimeException()));
    assertInstanceOf(BoltException.ResourceExhaustedException.class,
        Errors.from(Status.RESOURCE_EXHAUSTED.asRuntimeException()));
    assertInstanceOf(BoltException.UnauthenticatedException.class,
        Errors.from(Status.UNAUTHENTICATED.asRuntimeException()));
    BoltException other = Errors.from(Status.INTERNAL.withDescription("boom").asRuntimeException());
    assertEquals(BoltException.ServerException.class, other.getClass());
    assertEquals(Status.Code.INTERNAL, other.code());
    assertTrue(other.getMessage().contains("boom"));
  }

  @Test
  void tlsFailuresAreAuthenticationErrorsNotRetriable() {
    BoltException e = Errors.from(Status.UNAVAILABLE.withCause(new SSLHandshakeException("bad certificate"))
        .asRuntimeException());
    assertInstanceOf(BoltException.TlsException.class, e);
    assertInstanceOf(BoltException.UnavailableException.class, e);
    assertEquals(Status.Code.UNAVAILABLE, e.code());
    assertTrue(!RetryPolicy.retryable(e));
  }

  @Test
  void unwrapsFutureWrappers() {
    BoltException e = Errors.from(new CompletionException(Status.NOT_FOUND.asRuntimeException()));
    assertInstanceOf(BoltException.NotFoundException.class, e);
  }
}
