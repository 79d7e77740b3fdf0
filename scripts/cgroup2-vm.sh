#!/usr/bin/env bash
# The cgroup v2 suite: boots a VM with the unified hierarchy (virtme-ng over
# Debian's qemu and kernel, software emulation: KVM hangs on these machines)
# on this machine's own root file system, read-only, and runs the caps tests
# inside against real agents, expecting mode cgroup2 (a skip is a failure).
# The boot and the run are bounded: a VM that hangs is killed and fails.
#   scripts/cgroup2-vm.sh [PYTEST ARGS...]    (default: the caps tests)
# Environment: VENV (.venv), BOLT_AGENT_BIN (target/debug/bolt-agent),
# BOLT_VM_TIMEOUT (seconds, 900), BOLT_VM_CMD (a command to run instead),
# VIRTIOFSD (the Rust virtiofsd that `make vm` builds: files over virtio-fs
# instead of 9p), BOLT_VM_RWDIR (a folder the guest may write, for results).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv=${VENV:-$root/.venv}
agent=${BOLT_AGENT_BIN:-$root/target/debug/bolt-agent}
kernel=$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$kernel" ] || ! command -v qemu-system-x86_64 >/dev/null; then
    echo "cgroup2-vm: no kernel in /boot or no qemu-system-x86_64: 'make vm' installs Debian's linux-image-amd64 and qemu-system-x86" >&2
    exit 1
fi
[ -x "$venv/bin/vng" ] || { echo "cgroup2-vm: $venv/bin/vng missing: 'make venv' installs virtme-ng" >&2; exit 1; }

# The guest writes only here (and in its own /tmp): pytest's results and rc.
out=$(mktemp -d /tmp/bolt-vm.XXXXXX)
trap 'rm -rf "$out"' EXIT
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(integration/tests/test_caps.py -q -rs)
printf -v pytest_args ' %q' "${args[@]}"
inner=${BOLT_VM_CMD:-"$venv/bin/python -m pytest -p no:cacheprovider$pytest_args"}
cat > "$out/run.sh" <<EOF
cd $(printf %q "$root")
export BOLT_TEST_STUBS_DIR=/tmp/bolt-stubs BOLT_EXPECT_CAPS=cgroup2 BOLT_IN_VM=1
export BOLT_AGENT_BIN=$(printf %q "$agent") PATH=$(printf %q "$venv/bin"):\$PATH
echo "cgroup2-vm: \$(uname -r), controllers: \$(cat /sys/fs/cgroup/cgroup.controllers)"
$inner
echo \$? > $(printf %q "$out/rc")
EOF

echo "cgroup2-vm: booting $(basename "$kernel") (qemu, no KVM, 2 CPUs, 2 GiB)"
t0=$(date +%s)
set +e
vfs_dir=$(dirname "${VIRTIOFSD:-/nonexistent/virtiofsd}")
PATH="$venv/bin:$vfs_dir:$PATH" timeout --kill-after=15 "${BOLT_VM_TIMEOUT:-900}" \
    "$venv/bin/vng" --disable-kvm --run "$kernel" --memory 2G --cpus 2 \
    --cwd "$root" --rwdir "$out" ${BOLT_VM_RWDIR:+--rwdir "$BOLT_VM_RWDIR"} -- "sh $out/run.sh" </dev/null
vm_rc=$?
set -e
echo "cgroup2-vm: VM ran $(( $(date +%s) - t0 )) s"
if [ ! -s "$out/rc" ]; then
    echo "cgroup2-vm: FAILED: the VM ended (exit $vm_rc$([ $vm_rc = 124 ] && echo ', timed out')) before the tests did" >&2
    exit 1
fi
exit "$(cat "$out/rc")"
