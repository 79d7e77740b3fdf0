package io.bolt.client.fleet;

/**
 * How many errors a rollout tolerates before it stops starting instances: a count
 * N, or a percentage P of the inventory ({@code floor(P * instances / 100)}). The
 * rollout stops as soon as errors are <em>greater</em> than the allowance, so a
 * budget of 0 stops at the first error (the default).
 */
public record FailureBudget(int count, double percent, boolean isPercent) {
  public FailureBudget {
    if (count < 0 || percent < 0 || percent > 100) {
      throw new IllegalArgumentException("failure budget out of range");
    }
  }

  public static FailureBudget count(int n) {
    return new FailureBudget(n, 0, false);
  }

  public static FailureBudget percent(double p) {
    return new FailureBudget(0, p, true);
  }

  /** No limit: the rollout never stops for errors. */
  public static FailureBudget unlimited() {
    return new FailureBudget(Integer.MAX_VALUE, 0, false);
  }

  /** "3" or "25%". */
  public static FailureBudget parse(String s) {
    s = s.trim();
    if (s.endsWith("%")) {
      return percent(Double.parseDouble(s.substring(0, s.length() - 1).trim()));
    }
    return count(Integer.parseInt(s));
  }

  /** Errors allowed in a rollout over {@code instances} instances. */
  public int allowed(int instances) {
    return isPercent ? (int) Math.floor(percent * instances / 100.0) : count;
  }

  @Override
  public String toString() {
    return isPercent ? (percent == Math.floor(percent) ? (long) percent + "%" : percent + "%")
        : String.valueOf(count);
  }
}
