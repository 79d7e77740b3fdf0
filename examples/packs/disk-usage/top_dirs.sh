#!/bin/sh
# Largest folders under $BOLT_ARG_PATH, staying on its file system.
set -eu
path="$BOLT_ARG_PATH"
count="${BOLT_ARG_COUNT:-10}"
case "$path" in *..*) echo "refusing a path with '..': $path" >&2; exit 2 ;; esac
[ -d "$path" ] || { echo "not a folder: $path" >&2; exit 2; }
echo "largest folders under $path (KiB):"
du -x -k -d 1 -- "$path" 2>/dev/null | sort -rn | head -n "$((count + 1))"
