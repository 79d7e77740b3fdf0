package io.bolt.client;

import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;

/** The one daemon timer thread shared by polling and timeouts. */
public final class Timers {
  private Timers() {}

  /** Runs short tasks only (scheduling RPCs, completing futures). */
  public static final ScheduledExecutorService SCHEDULER = Executors.newSingleThreadScheduledExecutor(r -> {
    Thread t = new Thread(r, "bolt-timer");
    t.setDaemon(true);
    return t;
  });
}
