package io.bolt.client;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.BadRequest;
import io.grpc.Status;
import io.grpc.protobuf.StatusProto;
import java.util.ArrayList;
import java.util.List;

/**
 * Base of every error the Bolt client raises. Unchecked, like grpc-java's own
 * {@code StatusRuntimeException}, which it wraps as its cause.
 *
 * <pre>
 * BoltException                        any failed call (code = the gRPC status code)
 * ├── TransportException               the call got no answer from the agent
 * │   ├── UnavailableException         UNAVAILABLE: agent down, unreachable or shutting down
 * │   │   └── TlsException             the mTLS handshake failed (agent certificate not signed
 * │   │                                by the trusted CA, client certificate missing or refused)
 * │   └── DeadlineExceededException    DEADLINE_EXCEEDED: the per-call deadline passed
 * ├── RequestException                 the agent received the call and refused it
 * │   ├── InvalidArgumentException     INVALID_ARGUMENT, OUT_OF_RANGE: malformed call or arguments
 * │   ├── NotFoundException            NOT_FOUND: unknown pack, action or execution
 * │   ├── PermissionDeniedException    PERMISSION_DENIED: the authorization rules refuse
 * │   ├── UnauthenticatedException     UNAUTHENTICATED: no usable client certificate
 * │   ├── AlreadyExistsException       ALREADY_EXISTS: idempotency key reused for another request
 * │   ├── ResourceExhaustedException   RESOURCE_EXHAUSTED: beyond a configured limit
 * │   └── FailedPreconditionException  FAILED_PRECONDITION: the agent's setup forbids it (run-as user)
 * └── ServerException                  any other status (INTERNAL, UNKNOWN, UNIMPLEMENTED, ...)
 * </pre>
 *
 * <p>The same tree as the Python client's {@code BoltError}; the map from status
 * codes is shared data (integration/scenarios/helpers/errors.json) and {@link
 * Errors#from} is the one place where status codes become these types. Only
 * UnavailableException that is not a TlsException is retried (for idempotent calls).
 *
 * <p>Every error names the agent ({@link #target()}) and the RPC ({@link #method()}),
 * and its message is {@code "{target}: {method} failed: {CODE}: {details}"}.
 */
public class BoltException extends RuntimeException {
  private static final long serialVersionUID = 1L;
  private final Status.Code code;
  private final String target;
  private final String method;
  private final String details;

  /**
   * @param code the gRPC status code
   * @param target the agent's address, "host:port"
   * @param method the RPC, as the proto names it ("Execute", "Health", ...)
   * @param details what went wrong: the agent's own description, or the transport's
   * @param cause the underlying exception, usually a {@code StatusRuntimeException}
   */
  public BoltException(Status.Code code, String target, String method, String details, Throwable cause) {
    super(nonNull(target) + ": " + nonNull(method) + " failed: " + code.name() + ": " + nonNull(details), cause);
    this.code = code;
    this.target = nonNull(target);
    this.method = nonNull(method);
    this.details = nonNull(details);
  }

  private static String nonNull(String s) {
    return s == null ? "" : s;
  }

  /** The gRPC status code of the failed call. */
  public Status.Code code() {
    return code;
  }

  /** The agent's address, "host:port". */
  public String target() {
    return target;
  }

  /** The RPC that failed, as the proto names it ("Execute", "GetExecution", "Health", ...). */
  public String method() {
    return method;
  }

  /** What went wrong: the agent's own description, or the transport's when the agent was not reached. */
  public String details() {
    return details;
  }

  /**
   * The request fields the agent refused, from the status's {@code google.rpc.BadRequest}
   * detail ({@code args.count}, {@code pack}, {@code grace}, ...), so a program need not
   * parse the message; empty when the agent named none.
   */
  public List<FieldViolation> fieldViolations() {
    com.google.rpc.Status status = getCause() == null ? null : StatusProto.fromThrowable(getCause());
    if (status == null) {
      return List.of();
    }
    List<FieldViolation> out = new ArrayList<>();
    for (Any detail : status.getDetailsList()) {
      if (!detail.is(BadRequest.class)) {
        continue;
      }
      try {
        for (BadRequest.FieldViolation v : detail.unpack(BadRequest.class).getFieldViolationsList()) {
          out.add(new FieldViolation(v.getField(), v.getDescription()));
        }
      } catch (InvalidProtocolBufferException e) {
        // A malformed detail names no field.
      }
    }
    return List.copyOf(out);
  }

  /** One refused request field: its path ({@code args.count}) and why. */
  public record FieldViolation(String field, String description) {}

  /** The call may not have reached the agent: it is safe to retry an idempotent call. */
  public static class TransportException extends BoltException {
    private static final long serialVersionUID = 1L;

    public TransportException(Status.Code code, String target, String method, String details, Throwable cause) {
      super(code, target, method, details, cause);
    }
  }

  public static class UnavailableException extends TransportException {
    private static final long serialVersionUID = 1L;

    public UnavailableException(String target, String method, String details, Throwable cause) {
      super(Status.Code.UNAVAILABLE, target, method, details, cause);
    }
  }

  /** The mutual TLS handshake failed; retrying cannot help. */
  public static final class TlsException extends UnavailableException {
    private static final long serialVersionUID = 1L;

    public TlsException(String target, String method, String details, Throwable cause) {
      super(target, method, details, cause);
    }
  }

  public static final class DeadlineExceededException extends TransportException {
    private static final long serialVersionUID = 1L;

    public DeadlineExceededException(String target, String method, String details, Throwable cause) {
      super(Status.Code.DEADLINE_EXCEEDED, target, method, details, cause);
    }
  }

  /** The agent received the call and refused it; retrying the same call will not help. */
  public static class RequestException extends BoltException {
    private static final long serialVersionUID = 1L;

    public RequestException(Status.Code code, String target, String method, String details, Throwable cause) {
      super(code, target, method, details, cause);
    }
  }

  /** INVALID_ARGUMENT, or OUT_OF_RANGE (an argument beyond what the agent can serve). */
  public static final class InvalidArgumentException extends RequestException {
    private static final long serialVersionUID = 1L;

    public InvalidArgumentException(Status.Code code, String target, String method, String details,
        Throwable cause) {
      super(code, target, method, details, cause);
    }
  }

  public static final class NotFoundException extends RequestException {
    private static final long serialVersionUID = 1L;

    public NotFoundException(String target, String method, String details, Throwable cause) {
      super(Status.Code.NOT_FOUND, target, method, details, cause);
    }
  }

  public static final class PermissionDeniedException extends RequestException {
    private static final long serialVersionUID = 1L;

    public PermissionDeniedException(String target, String method, String details, Throwable cause) {
      super(Status.Code.PERMISSION_DENIED, target, method, details, cause);
    }
  }

  public static final class UnauthenticatedException extends RequestException {
    private static final long serialVersionUID = 1L;

    public UnauthenticatedException(String target, String method, String details, Throwable cause) {
      super(Status.Code.UNAUTHENTICATED, target, method, details, cause);
    }
  }

  public static final class AlreadyExistsException extends RequestException {
    private static final long serialVersionUID = 1L;

    public AlreadyExistsException(String target, String method, String details, Throwable cause) {
      super(Status.Code.ALREADY_EXISTS, target, method, details, cause);
    }
  }

  public static final class ResourceExhaustedException extends RequestException {
    private static final long serialVersionUID = 1L;

    public ResourceExhaustedException(String target, String method, String details, Throwable cause) {
      super(Status.Code.RESOURCE_EXHAUSTED, target, method, details, cause);
    }
  }

  /**
   * The agent's setup forbids it (e.g. the action's run-as user is missing or root is
   * refused); asking again unchanged will not help.
   */
  public static final class FailedPreconditionException extends RequestException {
    private static final long serialVersionUID = 1L;

    public FailedPreconditionException(String target, String method, String details, Throwable cause) {
      super(Status.Code.FAILED_PRECONDITION, target, method, details, cause);
    }
  }

  /** Any other status: a bug or an unexpected state on either side. */
  public static final class ServerException extends BoltException {
    private static final long serialVersionUID = 1L;

    public ServerException(Status.Code code, String target, String method, String details, Throwable cause) {
      super(code, target, method, details, cause);
    }
  }
}
