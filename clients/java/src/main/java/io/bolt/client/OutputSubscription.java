package io.bolt.client;

import io.bolt.v1.Execution;
import io.bolt.v1.OutputChunk;
import io.bolt.v1.StreamOutputRequest;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import io.grpc.stub.StreamObserver;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;

/**
 * A running StreamOutput delivered to an observer (the asynchronous form of
 * {@link OutputTail}). Dropped connections are resumed from the next offset;
 * {@code onError} receives {@link BoltException}s; {@code onCompleted} is called
 * once, after the closing chunk (with follow) or at the end of the available output.
 * {@link #close()} cancels the stream without calling the observer again.
 */
public final class OutputSubscription implements AutoCloseable {
  private final BoltClient client;
  private final String executionId;
  private final boolean follow;
  private final StreamObserver<OutputChunk> observer;
  private final CompletableFuture<Execution> completion = new CompletableFuture<>();
  private volatile long nextOffset;
  private volatile boolean cancelled;
  private volatile ClientCallStreamObserver<StreamOutputRequest> call;
  private int failures;
  /** System.nanoTime() of the first failure since the last chunk. */
  private long failingSince;

  private OutputSubscription(BoltClient client, String executionId, long offset, boolean follow,
      StreamObserver<OutputChunk> observer) {
    this.client = client;
    this.executionId = executionId;
    this.nextOffset = offset;
    this.follow = follow;
    this.observer = observer;
  }

  static OutputSubscription start(BoltClient client, String executionId, long offset, boolean follow,
      StreamObserver<OutputChunk> observer) {
    OutputSubscription s = new OutputSubscription(client, executionId, offset, follow, observer);
    s.open();
    return s;
  }

  /**
   * Completes when the stream ends: with the final record when the agent sent the
   * closing chunk, with null when a non-following stream stopped at the current end,
   * exceptionally with the {@link BoltException} given to onError.
   */
  public CompletionStage<Execution> completion() {
    return completion;
  }

  public long nextOffset() {
    return nextOffset;
  }

  private void open() {
    StreamOutputRequest req = StreamOutputRequest.newBuilder()
        .setExecutionId(executionId)
        .setOffset(nextOffset)
        .setFollow(follow)
        .build();
    client.asyncStream().streamOutput(req, new ClientResponseObserver<StreamOutputRequest, OutputChunk>() {
      private Execution last;

      @Override
      public void beforeStart(ClientCallStreamObserver<StreamOutputRequest> requestStream) {
        call = requestStream;
      }

      @Override
      public void onNext(OutputChunk c) {
        if (cancelled) {
          return;
        }
        failures = 0;
        if (c.getEnd()) {
          last = c.getExecution();
        } else {
          nextOffset = c.getOffset() + c.getData().size();
        }
        observer.onNext(c);
      }

      @Override
      public void onError(Throwable t) {
        if (cancelled) {
          completion.cancel(false);
          return;
        }
        BoltException be = Errors.from(t, client.target(), "StreamOutput");
        if (failures++ == 0) {
          failingSince = System.nanoTime();
        }
        // Reopened for as long as OutputTail reopens (an agent restarting on a busy host).
        boolean spent = System.nanoTime() - failingSince > OutputTail.RECONNECT_FOR.toNanos();
        if (RetryPolicy.retryable(be) && client.retryPolicy().maxAttempts() > 1 && !spent) {
          java.util.concurrent.CompletableFuture.delayedExecutor(
                  client.retryPolicy().backoff(failures + 1).toMillis(),
                  java.util.concurrent.TimeUnit.MILLISECONDS)
              .execute(() -> {
                if (!cancelled) {
                  open();
                }
              });
          return;
        }
        observer.onError(be);
        completion.completeExceptionally(be);
      }

      @Override
      public void onCompleted() {
        if (cancelled) {
          return;
        }
        observer.onCompleted();
        completion.complete(last);
      }
    });
  }

  /** Cancels the stream. */
  @Override
  public void close() {
    cancelled = true;
    ClientCallStreamObserver<StreamOutputRequest> c = call;
    if (c != null) {
      c.cancel("cancelled by the client", null);
    }
    completion.cancel(false);
  }
}
