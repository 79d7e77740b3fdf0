#!/usr/bin/env python3
"""Stamps a build label into a copy of a built bolt-agent, without compiling
it again: the binary then reports <version>+<label> (GetAgentInfo, logs,
--version). The label goes into the slot that agent/src/lib.rs reserves
(`BOLT-BUILD-LABEL:` and 32 bytes).

    scripts/stamp-build.py SOURCE DEST LABEL
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

MARKER = b"BOLT-BUILD-LABEL:"
SLOT = 32


def stamp(source: Path, dest: Path, label: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9.-]{1,32}", label):
        raise SystemExit(f"stamp-build: invalid label {label!r}: 1 to 32 ASCII letters, digits, '.' or '-'")
    data = bytearray(source.read_bytes())
    at = data.find(MARKER)
    if at < 0 or data.find(MARKER, at + 1) >= 0:
        raise SystemExit(f"stamp-build: {source} has {'no' if at < 0 else 'more than one'} build label slot")
    start = at + len(MARKER)
    data[start : start + SLOT] = label.encode().ljust(SLOT, b"\0")
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_bytes(bytes(data))
    shutil.copymode(source, tmp)
    os.replace(tmp, dest)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    stamp(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
