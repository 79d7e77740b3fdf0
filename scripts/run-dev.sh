#!/usr/bin/env bash
# `make run`: a development agent on 127.0.0.1:7443 serving examples/packs,
# with its certificates and data in .dev/ — paths relative to the repository
# root, as a newcomer would type them. integration/tests/test_readme.py runs
# this very script, so what it tests is what `make run` does.
#
# Environment (only the test needs these; `make run` leaves them unset):
#   BOLT_DEV_DIR     the dev folder, default .dev (relative to the repository root)
#   BOLT_DEV_LISTEN  the address to serve, default 127.0.0.1:7443
#   BOLT_AGENT_BIN   the agent binary, default target/debug/bolt-agent
#   GRPCURL          the grpcurl shown in the printed commands, default .tools/bin/grpcurl
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
DEV="${BOLT_DEV_DIR:-.dev}"
LISTEN="${BOLT_DEV_LISTEN:-127.0.0.1:7443}"
AGENT="${BOLT_AGENT_BIN:-target/debug/bolt-agent}"

test -f "$DEV/certs/ca.crt" || "$AGENT" certs init --dir "$DEV/certs" >/dev/null
mkdir -p "$DEV/data"

# The printed commands work from any folder: absolute paths.
case "$DEV" in /*) DEV_SHOWN="$DEV" ;; *) DEV_SHOWN="$ROOT/$DEV" ;; esac
GRPCURL="${GRPCURL:-$ROOT/.tools/bin/grpcurl}" DEV="$DEV_SHOWN" LISTEN="$LISTEN" bash scripts/how-to-call.sh

exec "$AGENT" run --config examples/dev-agent.toml --listen "$LISTEN" \
    --tls-dir "$DEV/certs" --packs-dir examples/packs --data-dir "$DEV/data"
