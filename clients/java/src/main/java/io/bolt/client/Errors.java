package io.bolt.client;

import io.bolt.client.BoltException.AlreadyExistsException;
import io.bolt.client.BoltException.DeadlineExceededException;
import io.bolt.client.BoltException.InvalidArgumentException;
import io.bolt.client.BoltException.NotFoundException;
import io.bolt.client.BoltException.PermissionDeniedException;
import io.bolt.client.BoltException.ResourceExhaustedException;
import io.bolt.client.BoltException.ServerException;
import io.bolt.client.BoltException.TlsException;
import io.bolt.client.BoltException.UnauthenticatedException;
import io.bolt.client.BoltException.UnavailableException;
import io.grpc.Status;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import javax.net.ssl.SSLException;

/** The one map from gRPC status codes (and TLS failures) to {@link BoltException} types. */
public final class Errors {
  private Errors() {}

  /** Converts any throwable from a gRPC call into a {@link BoltException}. */
  public static BoltException from(Throwable t) {
    while ((t instanceof CompletionException || t instanceof ExecutionException)
        && t.getCause() != null) {
      t = t.getCause();
    }
    if (t instanceof BoltException be) {
      return be;
    }
    Status status = Status.fromThrowable(t);
    Status.Code code = status.getCode();
    String message = describe(status);
    if (code == Status.Code.UNAVAILABLE && tlsFailure(t)) {
      return new TlsException("TLS handshake failed: " + message, t);
    }
    return switch (code) {
      case UNAVAILABLE -> new UnavailableException(message, t);
      case DEADLINE_EXCEEDED -> new DeadlineExceededException(message, t);
      case INVALID_ARGUMENT -> new InvalidArgumentException(message, t);
      case NOT_FOUND -> new NotFoundException(message, t);
      case PERMISSION_DENIED -> new PermissionDeniedException(message, t);
      case UNAUTHENTICATED -> new UnauthenticatedException(message, t);
      case ALREADY_EXISTS -> new AlreadyExistsException(message, t);
      case RESOURCE_EXHAUSTED -> new ResourceExhaustedException(message, t);
      default -> new ServerException(code, message, t);
    };
  }

  private static String describe(Status status) {
    String d = status.getDescription();
    if (d == null && status.getCause() != null) {
      d = status.getCause().toString();
    }
    return status.getCode() + (d == null ? "" : ": " + d);
  }

  /**
   * True when a TLS handshake or certificate check is somewhere in the cause chain:
   * grpc-java reports those as UNAVAILABLE, but retrying cannot help.
   */
  static boolean tlsFailure(Throwable t) {
    for (Throwable c = t; c != null; c = c.getCause()) {
      if (c instanceof SSLException || c instanceof java.security.cert.CertificateException) {
        return true;
      }
      String name = c.getClass().getName();
      if (name.endsWith("SslHandshakeTimeoutException")) {
        return true;
      }
      String msg = c.getMessage();
      if (msg != null && (msg.contains("CERTIFICATE_REQUIRED") || msg.contains("certificate required")
          || msg.contains("handshake") && msg.contains("alert"))) {
        return true;
      }
      if (c.getCause() == c) {
        break;
      }
    }
    return false;
  }
}
