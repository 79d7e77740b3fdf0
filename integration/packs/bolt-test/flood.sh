#!/bin/sh
echo "flooding ${BOLT_ARG_BYTES} bytes" >&2
head -c "${BOLT_ARG_BYTES}" /dev/zero | tr '\0' 'x'
