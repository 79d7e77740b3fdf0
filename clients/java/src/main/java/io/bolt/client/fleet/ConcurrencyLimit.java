package io.bolt.client.fleet;

import java.math.BigDecimal;
import java.math.RoundingMode;
import java.util.regex.Matcher;

/**
 * How many instances of a group may run at once ({@code maxConcurrency}): a count
 * N of at least 1, or a percentage P of the group (0 &lt; P &le; 100, at most 6
 * decimals), which allows {@code max(1, floor(P * groupSize / 100))} computed
 * exactly in decimal, so that "10%" of a three-instance zone still runs one at a
 * time. Zero is an error, never "unlimited": leave the option unset for that. The
 * rules are shared with the Python client (integration/scenarios/README.md).
 *
 * @param count the count, when not a percentage
 * @param percent the percentage as written, or null for a count
 */
public record ConcurrencyLimit(int count, BigDecimal percent) {
  private static final BigDecimal HUNDRED = BigDecimal.valueOf(100);

  public ConcurrencyLimit {
    if (percent == null && count < 1) {
      throw new IllegalArgumentException(
          "max concurrency must be at least 1, got " + count + " (leave it unset for no limit)");
    }
    if (percent != null && (percent.signum() <= 0 || percent.compareTo(HUNDRED) > 0)) {
      throw new IllegalArgumentException("max concurrency percentage must be over 0 and at most 100, got "
          + percent.toPlainString() + "% (leave it unset for no limit)");
    }
  }

  public static ConcurrencyLimit count(int n) {
    return new ConcurrencyLimit(n, null);
  }

  public static ConcurrencyLimit percent(BigDecimal p) {
    return new ConcurrencyLimit(0, p);
  }

  /** "5" or "25%" (digits, up to 6 decimals, then %); surrounding spaces ignored. */
  public static ConcurrencyLimit parse(String s) {
    String t = s.strip();
    Matcher pct = FailureBudget.PERCENT.matcher(t);
    if (pct.matches()) {
      return percent(new BigDecimal(pct.group(1)));
    }
    if (FailureBudget.COUNT.matcher(t).matches()) {
      try {
        return count(Integer.parseInt(t));
      } catch (NumberFormatException e) {
        throw new IllegalArgumentException("max concurrency too large: '" + s + "'");
      }
    }
    throw new IllegalArgumentException("bad max concurrency '" + s + "': a count like 5 or a percentage like 10%");
  }

  public boolean isPercent() {
    return percent != null;
  }

  /** Instances that may run at once in a group of {@code groupSize}. */
  public int limit(int groupSize) {
    if (percent == null) {
      return count;
    }
    int n = percent.multiply(BigDecimal.valueOf(groupSize)).divide(HUNDRED)
        .setScale(0, RoundingMode.FLOOR).intValueExact();
    return Math.max(1, n);
  }

  /** "5" or "25%", as {@link #parse} reads it. */
  @Override
  public String toString() {
    return percent == null ? String.valueOf(count) : percent.stripTrailingZeros().toPlainString() + "%";
  }
}
