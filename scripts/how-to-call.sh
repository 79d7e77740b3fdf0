#!/usr/bin/env bash
# Printed by `make run` before the agent starts: how to call it.
G="${GRPCURL:-grpcurl}"
[ -x "$G" ] || G=grpcurl
C="-cacert $DEV/certs/ca.crt -cert $DEV/certs/client.crt -key $DEV/certs/client.key"
cat <<TXT

Bolt agent on 127.0.0.1:7443 (dev certificates in $DEV/certs, packs from examples/packs).
Call it from another terminal:

  $G $C 127.0.0.1:7443 list
  $G $C 127.0.0.1:7443 bolt.v1.Bolt/ListActions
  $G $C -d '{"pack":"disk-usage","action":"top-dirs","args":{"path":"/usr","count":"5"}}' 127.0.0.1:7443 bolt.v1.Bolt/Execute
  $G $C -d '{"pack":"demo","action":"progress","args":{"seconds":"20"}}' 127.0.0.1:7443 bolt.v1.Bolt/Execute
  $G $C -d '{"execution_id":"<id from Execute>","follow":true}' 127.0.0.1:7443 bolt.v1.Bolt/StreamOutput
  $G $C -d '{"execution_id":"<id>"}' 127.0.0.1:7443 bolt.v1.Bolt/Kill
  $G $C 127.0.0.1:7443 bolt.v1.Bolt/ListExecutions
  $G $C 127.0.0.1:7443 bolt.v1.Bolt/GetAgentInfo

Output chunks carry base64 data in grpcurl's JSON. Stop the agent with Ctrl-C;
running actions keep running and the next start re-attaches to them.

TXT
