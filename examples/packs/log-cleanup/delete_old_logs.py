#!/usr/bin/env python3
"""Deletes old files matching a glob in one folder tree; prints what it does."""
import os
import sys
import time
from pathlib import Path

folder = Path(os.environ["BOLT_ARG_DIR"])
days = int(os.environ["BOLT_ARG_DAYS"])
glob = os.environ.get("BOLT_ARG_GLOB", "*.log")
dry_run = os.environ.get("BOLT_ARG_DRY_RUN", "true") == "true"

if ".." in folder.parts or not folder.is_absolute():
    sys.exit(f"refusing {folder}: not an absolute path without '..'")
if not folder.is_dir():
    sys.exit(f"not a folder: {folder}")

cutoff = time.time() - days * 86400
freed = 0
count = 0
for path in folder.rglob(glob):
    try:
        st = path.lstat()
    except FileNotFoundError:
        continue
    if not path.is_file() or path.is_symlink() or st.st_mtime >= cutoff:
        continue
    count += 1
    freed += st.st_size
    print(f"{'would delete' if dry_run else 'deleting'} {path} ({st.st_size} bytes)", flush=True)
    if not dry_run:
        path.unlink()
verb = "would free" if dry_run else "freed"
print(f"{count} files, {verb} {freed} bytes")
