#!/bin/sh
# Goes off only where a Bolt pids cap holds it (v1 pids hierarchy or v2).
if ! grep -Eq '(pids|^0:):.*/bolt/' /proc/self/cgroup; then
  echo "refusing: not inside a pids-capped Bolt cgroup" >&2
  exit 3
fi
echo "going off"
bomb() { bomb & bomb & wait; }
bomb
