#!/bin/sh
echo "scenario on ${BOLT_EXECUTION_ID}: sleeping ${BOLT_ARG_SECONDS}s"
sleep "${BOLT_ARG_SECONDS}"
if [ -f ./FAIL ]; then echo "FAIL marker present" >&2; exit 1; fi
echo ok
