#!/bin/sh
code="${BOLT_ARG_CODE:-1}"
echo "failing with $code" >&2
exit "$code"
