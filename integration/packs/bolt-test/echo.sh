#!/bin/sh
# Prints its argv and BOLT_ environment so tests can check they arrived verbatim.
for a in "$@"; do printf 'argv:%s\n' "$a"; done
env | grep '^BOLT_' | sort | sed 's/^/env:/'
printf 'cwd:%s\n' "$(pwd)"
