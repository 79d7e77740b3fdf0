package io.bolt.client;

import io.grpc.Status;

/**
 * Base of every error the Bolt client raises. Unchecked, like grpc-java's own
 * {@code StatusRuntimeException}, which it wraps as its cause.
 *
 * <pre>
 * BoltException                       any failed call (code = the gRPC status code)
 * ├── TransportException              the call got no answer from the agent
 * │   ├── UnavailableException        UNAVAILABLE: agent down, unreachable or shutting down
 * │   │   └── TlsException            the mTLS handshake failed (agent certificate not signed
 * │   │                               by the trusted CA, client certificate missing or refused)
 * │   └── DeadlineExceededException   DEADLINE_EXCEEDED: the per-call deadline passed
 * ├── RequestException                the agent received the call and refused it
 * │   ├── InvalidArgumentException    INVALID_ARGUMENT: malformed call or arguments
 * │   ├── NotFoundException           NOT_FOUND: unknown pack, action or execution
 * │   ├── PermissionDeniedException   PERMISSION_DENIED: the authorization rules refuse
 * │   ├── UnauthenticatedException    UNAUTHENTICATED: no usable client certificate
 * │   ├── AlreadyExistsException      ALREADY_EXISTS: idempotency key reused for another request
 * │   └── ResourceExhaustedException  RESOURCE_EXHAUSTED: beyond a configured limit
 * └── ServerException                 any other status (INTERNAL, UNKNOWN, UNIMPLEMENTED, ...)
 * </pre>
 *
 * The same tree as the Python client's {@code BoltError}. {@link Errors#from} is the
 * one place where status codes become these types. Only UnavailableException that
 * is not a TlsException is retried (for idempotent calls).
 */
public class BoltException extends RuntimeException {
  private static final long serialVersionUID = 1L;
  private final Status.Code code;

  public BoltException(Status.Code code, String message, Throwable cause) {
    super(message, cause);
    this.code = code;
  }

  /** The gRPC status code of the failed call. */
  public Status.Code code() {
    return code;
  }

  /** The call may not have reached the agent: it is safe to retry an idempotent call. */
  public static class TransportException extends BoltException {
    private static final long serialVersionUID = 1L;

    public TransportException(Status.Code code, String message, Throwable cause) {
      super(code, message, cause);
    }
  }

  public static class UnavailableException extends TransportException {
    private static final long serialVersionUID = 1L;

    public UnavailableException(String message, Throwable cause) {
      super(Status.Code.UNAVAILABLE, message, cause);
    }
  }

  /** The mutual TLS handshake failed; retrying cannot help. */
  public static final class TlsException extends UnavailableException {
    private static final long serialVersionUID = 1L;

    public TlsException(String message, Throwable cause) {
      super(message, cause);
    }
  }

  public static final class DeadlineExceededException extends TransportException {
    private static final long serialVersionUID = 1L;

    public DeadlineExceededException(String message, Throwable cause) {
      super(Status.Code.DEADLINE_EXCEEDED, message, cause);
    }
  }

  /** The agent received the call and refused it; retrying the same call will not help. */
  public static class RequestException extends BoltException {
    private static final long serialVersionUID = 1L;

    public RequestException(Status.Code code, String message, Throwable cause) {
      super(code, message, cause);
    }
  }

  public static final class InvalidArgumentException extends RequestException {
    private static final long serialVersionUID = 1L;

    public InvalidArgumentException(String message, Throwable cause) {
      super(Status.Code.INVALID_ARGUMENT, message, cause);
    }
  }

  public static final class NotFoundException extends RequestException {
    private static final long serialVersionUID = 1L;

    public NotFoundException(String message, Throwable cause) {
      super(Status.Code.NOT_FOUND, message, cause);
    }
  }

  public static final class PermissionDeniedException extends RequestException {
    private static final long serialVersionUID = 1L;

    public PermissionDeniedException(String message, Throwable cause) {
      super(Status.Code.PERMISSION_DENIED, message, cause);
    }
  }

  public static final class UnauthenticatedException extends RequestException {
    private static final long serialVersionUID = 1L;

    public UnauthenticatedException(String message, Throwable cause) {
      super(Status.Code.UNAUTHENTICATED, message, cause);
    }
  }

  public static final class AlreadyExistsException extends RequestException {
    private static final long serialVersionUID = 1L;

    public AlreadyExistsException(String message, Throwable cause) {
      super(Status.Code.ALREADY_EXISTS, message, cause);
    }
  }

  public static final class ResourceExhaustedException extends RequestException {
    private static final long serialVersionUID = 1L;

    public ResourceExhaustedException(String message, Throwable cause) {
      super(Status.Code.RESOURCE_EXHAUSTED, message, cause);
    }
  }

  /** Any other status: a bug or an unexpected state on either side. */
  public static final class ServerException extends BoltException {
    private static final long serialVersionUID = 1L;

    public ServerException(Status.Code code, String message, Throwable cause) {
      super(code, message, cause);
    }
  }
}
