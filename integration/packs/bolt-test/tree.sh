#!/bin/sh
# A process tree: two background children, one of which has a child of its
# own, and a grandchild that escapes into its own session with setsid.
sleep 1000 &
echo "child $!"
sh -c 'sleep 1001 & echo "grandchild $!"; wait' &
echo "child $!"
setsid sh -c 'echo "session $$"; exec sleep 1002' &
sleep 0.2
echo ready
wait
