#!/usr/bin/env python3
"""Prints lines shaped like a busy Java service's log, with varying ids,
latencies, levels and the occasional stack trace."""
import os
import random
import sys

rng = random.Random(7)
lines = int(os.environ.get("BOLT_ARG_LINES", "100000"))
threads = [f"http-nio-8080-exec-{i}" for i in range(1, 41)] + ["scheduling-1", "kafka-consumer-3"]
loggers = ["c.e.orders.OrderService", "c.e.orders.PaymentClient", "c.e.web.RequestLogger",
           "o.a.kafka.clients.consumer.KafkaConsumer", "c.e.inventory.StockCache"]
out = sys.stdout
ts = 1_764_396_000_000
for n in range(lines):
    ts += rng.randint(0, 40)
    s, ms = divmod(ts, 1000)
    h, m, sec = (s // 3600) % 24, (s // 60) % 60, s % 60
    level = rng.choices(["INFO", "DEBUG", "WARN", "ERROR"], [70, 20, 8, 2])[0]
    logger = rng.choice(loggers)
    msg = rng.choice([
        f"order {rng.randint(10000, 99999)} processed in {rng.randint(2, 900)} ms (items={rng.randint(1, 9)}, user=u-{rng.randint(1000, 9999)})",
        f"GET /api/v2/orders/{rng.randint(10000, 99999)} 200 {rng.randint(1, 300)}ms",
        f"payment authorised: txn={rng.getrandbits(64):016x} amount={rng.randint(1, 5000)}.{rng.randint(0, 99):02d} EUR",
        f"cache refresh: {rng.randint(0, 5000)} entries, {rng.randint(0, 50)} evicted",
        f"committed offsets for partition orders-{rng.randint(0, 11)} at {rng.randint(1, 10**9)}",
    ])
    out.write(f"2026-11-29T{h:02d}:{m:02d}:{sec:02d}.{ms:03d}Z {level:<5} [{rng.choice(threads)}] {logger} - {msg}\n")
    if level == "ERROR":
        out.write("java.net.SocketTimeoutException: Read timed out\n\tat java.base/sun.nio.ch.NioSocketImpl.timedRead(NioSocketImpl.java:288)\n"
                  "\tat c.e.orders.PaymentClient.authorise(PaymentClient.java:112)\n")
