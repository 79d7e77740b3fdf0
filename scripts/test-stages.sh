#!/usr/bin/env bash
# `make test`: runs each make target given, in order, timing each. A set-up
# stage that fails (build, venv, tools) stops the run; a failing test stage
# (test-*) does not keep the others from running. Prints a table of the
# stages and their times at the end either way; exits non-zero if any failed.
#   scripts/test-stages.sh STAGE...
set -uo pipefail
cd "$(dirname "$0")/.."

names=() secs=() results=()
started=$(date +%s)
failed=""
for stage in "$@"; do
    t0=$(date +%s)
    if make --no-print-directory "$stage"; then result=ok; else result=FAILED; fi
    names+=("$stage") secs+=($(( $(date +%s) - t0 ))) results+=("$result")
    if [ "$result" != ok ]; then
        failed="$failed $stage"
        case "$stage" in test-*) ;; *) break ;; esac
    fi
done
total=$(( $(date +%s) - started ))

echo
echo "make test: time per stage"
printf '  %-18s %8s  %s\n' STAGE SECONDS RESULT
for i in "${!names[@]}"; do
    printf '  %-18s %8s  %s\n' "${names[$i]}" "${secs[$i]}" "${results[$i]}"
done
for stage in "$@"; do
    case " ${names[*]} " in *" $stage "*) ;; *) printf '  %-18s %8s  %s\n' "$stage" - "not run" ;; esac
done
printf '  %-18s %8s  (%d min %02d s)\n' total "$total" $(( total / 60 )) $(( total % 60 ))
if [ -n "$failed" ]; then
    echo "make test: FAILED:$failed"
    exit 1
fi
echo "make test: every stage succeeded"
