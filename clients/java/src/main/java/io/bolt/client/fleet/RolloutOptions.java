package io.bolt.client.fleet;

import java.time.Duration;
import java.util.Objects;

/**
 * How a rollout runs. Defaults: one at a time, no concurrency limit, failure budget
 * 0 (stop at the first error), no health gate, the action's own timeout. The
 * names are the Python client's {@code FleetOptions} in camelCase
 * (integration/scenarios/README.md).
 *
 * @param strategy how instances are grouped
 * @param maxConcurrency instances running at once inside a group: a count or a
 *     percentage of the group (ONE_AT_A_TIME is always 1); null means unlimited, the
 *     default
 * @param maxErrors the failure budget
 * @param healthGate call Health before each instance; an error or an answer other than
 *     SERVING or DEGRADED makes the instance UNHEALTHY and nothing is executed there
 * @param healthTimeout deadline of that Health call (default 3 s)
 * @param instanceTimeout sent as the execution's timeout (null: the action's own), so
 *     the agent ends it TIMED_OUT; if no end is seen {@code timeoutGrace} (default 5 s)
 *     later, the client kills the execution and reports TIMED_OUT
 * @param timeoutGrace see instanceTimeout
 * @param excerptBytes how many trailing output bytes each result keeps
 */
public record RolloutOptions(Strategy strategy, ConcurrencyLimit maxConcurrency, FailureBudget maxErrors,
    boolean healthGate, Duration healthTimeout, Duration instanceTimeout, Duration timeoutGrace, int excerptBytes) {

  public RolloutOptions {
    Objects.requireNonNull(strategy, "strategy");
    Objects.requireNonNull(maxErrors, "maxErrors");
    Objects.requireNonNull(healthTimeout, "healthTimeout");
    Objects.requireNonNull(timeoutGrace, "timeoutGrace");
  }

  public static RolloutOptions defaults() {
    return builder().build();
  }

  public static Builder builder() {
    return new Builder();
  }

  /** Instances that may run at once in a group of {@code groupSize}. */
  int concurrency(int groupSize) {
    if (strategy == Strategy.ONE_AT_A_TIME) {
      return 1;
    }
    return maxConcurrency == null ? Math.max(1, groupSize) : maxConcurrency.limit(groupSize);
  }

  /**
   * How many instances of a group of {@code groupSize} may run at once under a
   * {@code max_concurrency} as scripts and JSON write it: an Integer is a count, a
   * String is parsed ("5", "25%"); anything else (a boolean, a fraction) is refused.
   * The Python client's {@code concurrency_limit}.
   *
   * @throws IllegalArgumentException for anything but a count of at least 1 or a
   *     percentage over 0 and at most 100
   */
  public static int concurrencyLimit(Object spec, int groupSize) {
    if (spec instanceof ConcurrencyLimit c) {
      return c.limit(groupSize);
    }
    if (spec instanceof Integer n) {
      return ConcurrencyLimit.count(n).limit(groupSize);
    }
    if (spec instanceof String s) {
      return ConcurrencyLimit.parse(s).limit(groupSize);
    }
    throw new IllegalArgumentException("bad max concurrency " + spec + ": a count like 5 or a percentage like \"10%\"");
  }

  public static final class Builder {
    private Strategy strategy = Strategy.ONE_AT_A_TIME;
    private ConcurrencyLimit maxConcurrency;
    private FailureBudget maxErrors = FailureBudget.count(0);
    private boolean healthGate;
    private Duration healthTimeout = Duration.ofSeconds(3);
    private Duration instanceTimeout;
    private Duration timeoutGrace = Duration.ofSeconds(5);
    private int excerptBytes = 2048;

    public Builder strategy(Strategy strategy) {
      this.strategy = strategy;
      return this;
    }

    /** At most {@code n} (at least 1) instances at once inside a group; unlimited when not set. */
    public Builder maxConcurrency(int n) {
      return maxConcurrency(ConcurrencyLimit.count(n));
    }

    /**
     * "N" (a count, at least 1) or "P%" (a percentage of each group, over 0 and at
     * most 100, rounded down but at least 1); unlimited when not set.
     */
    public Builder maxConcurrency(String spec) {
      return maxConcurrency(ConcurrencyLimit.parse(spec));
    }

    public Builder maxConcurrency(ConcurrencyLimit limit) {
      this.maxConcurrency = Objects.requireNonNull(limit, "limit");
      return this;
    }

    public Builder maxErrors(FailureBudget budget) {
      this.maxErrors = budget;
      return this;
    }

    public Builder maxErrors(int count) {
      return maxErrors(FailureBudget.count(count));
    }

    public Builder healthGate(boolean on) {
      this.healthGate = on;
      return this;
    }

    public Builder healthTimeout(Duration timeout) {
      this.healthTimeout = timeout;
      return this;
    }

    public Builder instanceTimeout(Duration timeout) {
      this.instanceTimeout = timeout;
      return this;
    }

    public Builder timeoutGrace(Duration grace) {
      this.timeoutGrace = grace;
      return this;
    }

    public Builder excerptBytes(int n) {
      this.excerptBytes = n;
      return this;
    }

    public RolloutOptions build() {
      return new RolloutOptions(strategy, maxConcurrency, maxErrors, healthGate, healthTimeout, instanceTimeout,
          timeoutGrace, excerptBytes);
    }
  }
}
