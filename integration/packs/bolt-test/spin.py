#!/usr/bin/env python3
"""Spins for the given wall time and reports the CPU time it was given."""
import os
import time

seconds = int(os.environ.get("BOLT_ARG_SECONDS", "2"))
start, cpu0 = time.monotonic(), time.process_time()
n = 0
while time.monotonic() - start < seconds:
    n += 1
wall, cpu = time.monotonic() - start, time.process_time() - cpu0
print(f"wall={wall:.3f} cpu={cpu:.3f} share={cpu / wall:.3f}", flush=True)
