#!/usr/bin/env bash
# Printed by `make run` (scripts/run-dev.sh) before the agent starts: how to
# call it. Takes DEV (the dev folder), GRPCURL and LISTEN from the environment.
A="${LISTEN:-127.0.0.1:7443}"
G="${GRPCURL:-grpcurl}"
[ -x "$G" ] || G=grpcurl
C="-cacert $DEV/certs/ca.crt -cert $DEV/certs/client.crt -key $DEV/certs/client.key"
cat <<TXT

Bolt agent on $A (dev certificates in $DEV/certs, packs from examples/packs).
Call it from another terminal:

  $G $C $A list
  $G $C $A bolt.v1.Bolt/ListActions
  $G $C -d '{"pack":"disk-usage","action":"top-dirs","args":{"path":"/usr","count":"5"}}' $A bolt.v1.Bolt/Execute
  $G $C -d '{"pack":"demo","action":"progress","args":{"seconds":"20"}}' $A bolt.v1.Bolt/Execute
  $G $C -d '{"execution_id":"<id from Execute>","follow":true}' $A bolt.v1.Bolt/StreamOutput
  $G $C -d '{"execution_id":"<id>"}' $A bolt.v1.Bolt/Kill
  $G $C $A bolt.v1.Bolt/ListExecutions
  $G $C $A bolt.v1.Bolt/GetAgentInfo

Output chunks carry base64 data in grpcurl's JSON. Stop the agent with Ctrl-C;
running actions keep running and the next start re-attaches to them.

TXT
