#!/bin/sh
ticks=0; interval=1
for a in "$@"; do
  case "$a" in
    --ticks=*) ticks="${a#--ticks=}" ;;
    --interval=*) interval="${a#--interval=}" ;;
  esac
done
i=1
while [ "$i" -le "$ticks" ]; do
  echo "tick $i"
  sleep "$interval"
  i=$((i + 1))
done
echo done
