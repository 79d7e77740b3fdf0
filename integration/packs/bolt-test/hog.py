#!/usr/bin/env python3
"""Allocates and touches memory in 8 MiB steps, printing progress."""
import os
import sys

mib = int(os.environ["BOLT_ARG_MIB"])
held = []
for i in range(0, mib, 8):
    block = bytearray(8 << 20)
    for j in range(0, len(block), 4096):
        block[j] = 1
    held.append(block)
    print(f"holding {i + 8} MiB", flush=True)
print("done", flush=True)
sys.exit(0)
