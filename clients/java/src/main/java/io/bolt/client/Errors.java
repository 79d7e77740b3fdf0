package io.bolt.client;

import io.bolt.client.BoltException.AlreadyExistsException;
import io.bolt.client.BoltException.DeadlineExceededException;
import io.bolt.client.BoltException.FailedPreconditionException;
import io.bolt.client.BoltException.InvalidArgumentException;
import io.bolt.client.BoltException.NotFoundException;
import io.bolt.client.BoltException.PermissionDeniedException;
import io.bolt.client.BoltException.ResourceExhaustedException;
import io.bolt.client.BoltException.ServerException;
import io.bolt.client.BoltException.TlsException;
import io.bolt.client.BoltException.UnauthenticatedException;
import io.bolt.client.BoltException.UnavailableException;
import io.grpc.Status;
import java.security.cert.CertificateException;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import javax.net.ssl.SSLException;

/**
 * The one map from gRPC status codes (and TLS failures) to {@link BoltException}
 * types, shared with the Python client as data: integration/scenarios/helpers/errors.json.
 */
public final class Errors {
  /** What grpc-java says for any transport failure; the cause tells what happened. */
  private static final String GENERIC_IO = "io exception";
  private static final String TLS_HINT = "; check that the agent's certificate is signed by the configured CA"
      + " and that the client certificate is signed by a CA the agent trusts";

  private Errors() {}

  /**
   * Converts any throwable from a call to {@code method} ("Execute", "Health", ...)
   * on the agent at {@code target} into a {@link BoltException}. A BoltException
   * (possibly wrapped by a future) is returned as it is.
   */
  public static BoltException from(Throwable t, String target, String method) {
    while ((t instanceof CompletionException || t instanceof ExecutionException) && t.getCause() != null) {
      t = t.getCause();
    }
    if (t instanceof BoltException be) {
      return be;
    }
    Status status = Status.fromThrowable(t);
    Status.Code code = status.getCode();
    Throwable tls = code == Status.Code.UNAVAILABLE ? tlsFailure(t) : null;
    if (tls != null) {
      return new TlsException(target, method, "TLS handshake failed: " + oneLine(describe(tls)) + TLS_HINT, t);
    }
    String details = details(status);
    return switch (code) {
      case UNAVAILABLE -> new UnavailableException(target, method, details, t);
      case DEADLINE_EXCEEDED -> new DeadlineExceededException(target, method, details, t);
      case INVALID_ARGUMENT, OUT_OF_RANGE -> new InvalidArgumentException(code, target, method, details, t);
      case NOT_FOUND -> new NotFoundException(target, method, details, t);
      case PERMISSION_DENIED -> new PermissionDeniedException(target, method, details, t);
      case UNAUTHENTICATED -> new UnauthenticatedException(target, method, details, t);
      case ALREADY_EXISTS -> new AlreadyExistsException(target, method, details, t);
      case RESOURCE_EXHAUSTED -> new ResourceExhaustedException(target, method, details, t);
      case FAILED_PRECONDITION -> new FailedPreconditionException(target, method, details, t);
      default -> new ServerException(code, target, method, details, t);
    };
  }

  /**
   * The agent's description as it is; but when grpc-java only says "io exception"
   * (or nothing), what the innermost cause says ("Connection refused", ...), on one line.
   */
  private static String details(Status status) {
    String d = status.getDescription();
    if (d != null && !d.lines().findFirst().orElse("").strip().equals(GENERIC_IO)) {
      return d;
    }
    if (status.getCause() != null) {
      return oneLine(describe(innermost(status.getCause())));
    }
    return d == null ? "" : oneLine(d);
  }

  private static Throwable innermost(Throwable t) {
    while (t.getCause() != null && t.getCause() != t) {
      t = t.getCause();
    }
    return t;
  }

  private static String describe(Throwable t) {
    return t.getMessage() != null && !t.getMessage().isBlank() ? t.getMessage() : t.getClass().getSimpleName();
  }

  private static String oneLine(String s) {
    return s.strip().replaceAll("\\s*\\R\\s*", " ");
  }

  /**
   * The innermost TLS failure in the cause chain, or null: grpc-java reports those
   * as UNAVAILABLE, but retrying cannot help. Found by type only: an {@link
   * SSLException} (handshake failures, alerts from the peer, netty's
   * SslHandshakeTimeoutException, which is an SSLHandshakeException) or a {@link
   * CertificateException} (verification). Never by words in a message: an agent's
   * host name or its details may well contain "tls" or "handshake".
   */
  static Throwable tlsFailure(Throwable t) {
    Throwable found = null;
    for (Throwable c = t; c != null; c = c.getCause() == c ? null : c.getCause()) {
      if (c instanceof SSLException || c instanceof CertificateException) {
        found = c;
      }
    }
    return found;
  }
}
