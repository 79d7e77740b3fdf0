#!/bin/sh
# Prints its argv and BOLT_ environment so tests can check they arrived verbatim,
# then how it runs: working folder, niceness, process group and environment size.
for a in "$@"; do printf 'argv:%s\n' "$a"; done
env | grep '^BOLT_' | sort | sed 's/^/env:/'
printf 'cwd:%s\n' "$(pwd)"
stat=$(cat /proc/$$/stat)
set -- ${stat##*) }
printf 'pid:%s pgid:%s nice:%s\n' "$$" "$3" "${17}"
printf 'envnames:%s\n' "$(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' | grep -v '^BOLT_' | sort | tr '\n' ' ')"
