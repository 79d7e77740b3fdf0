package io.bolt.client;

import java.time.Duration;

/**
 * How idempotent calls are retried after a transport failure (UNAVAILABLE that is
 * not a TLS failure: {@link BoltException.TlsException} is never retried). Non-idempotent calls are never retried; Execute counts as
 * idempotent because every attempt carries the same idempotency key.
 *
 * @param maxAttempts total attempts, 1 = no retry
 * @param initialBackoff wait before the second attempt; doubled each time
 * @param maxBackoff upper bound of one wait
 */
public record RetryPolicy(int maxAttempts, Duration initialBackoff, Duration maxBackoff) {
  public RetryPolicy {
    if (maxAttempts < 1) {
      throw new IllegalArgumentException("maxAttempts must be at least 1");
    }
  }

  /** 4 attempts, 100 ms doubling to at most 2 s. */
  public static RetryPolicy defaults() {
    return new RetryPolicy(4, Duration.ofMillis(100), Duration.ofSeconds(2));
  }

  public static RetryPolicy none() {
    return new RetryPolicy(1, Duration.ZERO, Duration.ZERO);
  }

  /** Wait before attempt number {@code attempt} (2 = the first retry). */
  Duration backoff(int attempt) {
    long ms = initialBackoff.toMillis() << Math.min(20, Math.max(0, attempt - 2));
    return Duration.ofMillis(Math.min(ms, maxBackoff.toMillis()));
  }

  static boolean retryable(BoltException e) {
    return e instanceof BoltException.UnavailableException && !(e instanceof BoltException.TlsException);
  }
}
