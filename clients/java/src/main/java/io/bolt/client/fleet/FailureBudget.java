package io.bolt.client.fleet;

import java.math.BigDecimal;
import java.math.RoundingMode;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * How many errors a rollout tolerates before it stops starting instances: a count
 * N, or a percentage P (0 to 100, at most 6 decimals) of the inventory, which allows
 * {@code floor(P * instances / 100)} errors computed exactly in decimal, so never
 * more than asked. The rollout stops as soon as errors are <em>greater</em> than
 * the allowance, so a budget of 0 stops at the first error (the default). The
 * rules are shared with the Python client (integration/scenarios/README.md).
 */
public record FailureBudget(int count, double percent, boolean isPercent) {
  /** A count: ASCII digits only (no sign, no exponent). Shared with {@link ConcurrencyLimit}. */
  static final Pattern COUNT = Pattern.compile("[0-9]+");
  /** A percentage: digits with up to 6 decimals, then %. Shared with {@link ConcurrencyLimit}. */
  static final Pattern PERCENT = Pattern.compile("([0-9]+(?:\\.[0-9]{1,6})?)\\s*%");

  public FailureBudget {
    if (count < 0 || !(percent >= 0 && percent <= 100)) {
      throw new IllegalArgumentException("failure budget out of range: a count >= 0 or a percentage 0-100");
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

  /** "3" or "25%" (digits, up to 6 decimals, then %); surrounding spaces ignored. */
  public static FailureBudget parse(String s) {
    String t = s.strip();
    Matcher pct = PERCENT.matcher(t);
    if (pct.matches()) {
      return percent(new BigDecimal(pct.group(1)).doubleValue());
    }
    if (COUNT.matcher(t).matches()) {
      try {
        return count(Integer.parseInt(t));
      } catch (NumberFormatException e) {
        throw new IllegalArgumentException("failure budget too large: '" + s + "'");
      }
    }
    throw new IllegalArgumentException("bad failure budget '" + s + "': a count like 3 or a percentage like 10%");
  }

  /** Errors allowed in a rollout over {@code instances} instances. */
  public int allowed(int instances) {
    if (!isPercent) {
      return count;
    }
    // BigDecimal.valueOf gives back the decimal the percentage was written as ("0.57", not 0.5699999...).
    return BigDecimal.valueOf(percent).multiply(BigDecimal.valueOf(instances))
        .divide(BigDecimal.valueOf(100)).setScale(0, RoundingMode.FLOOR).intValueExact();
  }

  @Override
  public String toString() {
    return isPercent ? BigDecimal.valueOf(percent).stripTrailingZeros().toPlainString() + "%" : String.valueOf(count);
  }
}
