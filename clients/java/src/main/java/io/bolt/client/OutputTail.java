package io.bolt.client;

import io.bolt.v1.Execution;
import io.bolt.v1.OutputChunk;
import io.bolt.v1.StreamOutputRequest;
import io.grpc.Context;
import java.util.Iterator;
import java.util.NoSuchElementException;
import java.util.Optional;

/**
 * A live iterator over an execution's output (StreamOutput). {@link #hasNext()}
 * blocks until a chunk arrives or the stream ends. When the connection drops
 * (UNAVAILABLE) the stream is reopened from the offset after the last byte seen,
 * so no byte is delivered twice or lost; it keeps reconnecting for
 * {@link #RECONNECT_FOR} (an agent restarting on a busy host), as the Python
 * client's tail does. Close it to cancel the stream early. Not thread-safe:
 * one consumer.
 */
public final class OutputTail implements Iterator<OutputChunk>, AutoCloseable {
  /** How long a broken stream is reopened before the error is thrown. */
  public static final java.time.Duration RECONNECT_FOR = java.time.Duration.ofSeconds(30);

  private final BoltClient client;
  private final String executionId;
  private final boolean follow;
  private long nextOffset;
  private Context.CancellableContext context;
  private Iterator<OutputChunk> stream;
  private OutputChunk pending;
  private boolean done;
  private int failures;
  /** System.nanoTime() of the first failure since the last chunk. */
  private long failingSince;
  private Execution finalExecution;

  OutputTail(BoltClient client, String executionId, long offset, boolean follow) {
    this.client = client;
    this.executionId = executionId;
    this.nextOffset = offset;
    this.follow = follow;
  }

  @Override
  public boolean hasNext() {
    if (pending != null) {
      return true;
    }
    while (!done) {
      if (stream == null) {
        open();
      }
      try {
        if (!stream.hasNext()) {
          finish();
          return false;
        }
        OutputChunk c = stream.next();
        failures = 0;
        if (c.getEnd()) {
          finalExecution = c.getExecution();
        } else {
          nextOffset = c.getOffset() + c.getData().size();
        }
        pending = c;
        return true;
      } catch (RuntimeException e) {
        BoltException be = Errors.from(e, client.target(), "StreamOutput");
        cancelContext();
        stream = null;
        if (failures++ == 0) {
          failingSince = System.nanoTime();
        }
        boolean spent = System.nanoTime() - failingSince > RECONNECT_FOR.toNanos();
        if (!RetryPolicy.retryable(be) || client.retryPolicy().maxAttempts() == 1 || spent) {
          done = true;
          throw be;
        }
        client.sleep(client.retryPolicy().backoff(failures + 1), "StreamOutput");
      }
    }
    return false;
  }

  @Override
  public OutputChunk next() {
    if (!hasNext()) {
      throw new NoSuchElementException();
    }
    OutputChunk c = pending;
    pending = null;
    return c;
  }

  /** Offset of the next byte this tail would deliver (resume point). */
  public long nextOffset() {
    return nextOffset;
  }

  /** The final record, once the stream delivered its closing chunk. */
  public Optional<Execution> finalExecution() {
    return Optional.ofNullable(finalExecution);
  }

  private void open() {
    StreamOutputRequest req = StreamOutputRequest.newBuilder()
        .setExecutionId(executionId)
        .setOffset(nextOffset)
        .setFollow(follow)
        .build();
    context = Context.current().withCancellation();
    Context previous = context.attach();
    try {
      stream = client.blockingStream().streamOutput(req);
    } finally {
      context.detach(previous);
    }
  }

  private void finish() {
    done = true;
    cancelContext();
    stream = null;
  }

  private void cancelContext() {
    if (context != null) {
      context.cancel(null);
      context = null;
    }
  }

  /** Cancels the stream; later hasNext() calls return false. */
  @Override
  public void close() {
    pending = null;
    finish();
  }
}
