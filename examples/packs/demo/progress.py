#!/usr/bin/env python3
"""Prints a progress line every second; exits 0 at the end."""
import os
import sys
import time

seconds = int(os.environ.get("BOLT_ARG_SECONDS", "60"))
label = os.environ.get("BOLT_ARG_LABEL", "task")
for i in range(1, seconds + 1):
    time.sleep(1)
    print(f"{label}: {i}/{seconds} ({100 * i // seconds}%)", flush=True)
print(f"{label}: done", file=sys.stderr)
