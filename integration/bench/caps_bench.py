"""`make bench-cgroup2`: what putting each execution in a cgroup costs, per
way of doing it, as rows side by side.

    caps_bench.py measure LABEL OUT.json [--move | --off] [--executions N]
        One release agent with caps on (`--move`: caps.clone_into_cgroup =
        false; `--off`: caps.enabled = false, no cgroup at all), Execute -> RUNNING on a warm channel and short-action
        throughput; the hierarchy and how actions entered their cgroup
        (exit.json's cgroup_entry) are read back, not assumed.
    caps_bench.py table OUT.json...
        The rows of every measure, side by side.

Run on the host (cgroup v1 here) and, through scripts/cgroup2-vm.sh, in a
VM with the unified hierarchy. Under software emulation every figure is far
slower than on the host: compare the VM's rows with each other.
Not a test: it prints numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import agent_bench as ab  # noqa: E402  (stubs, channel, the measures)
from bolt.v1 import bolt_pb2 as pb  # noqa: E402
from bolt.v1 import bolt_pb2_grpc  # noqa: E402

from bolt_testing import Agent  # noqa: E402


async def measure(label: str, move: bool, off: bool, executions: int) -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix="bolt-caps-bench-"))
    config = '[log]\nlevel = "warn"\n[limits]\nmax_pending = 256\n'
    config += f"[caps]\nclone_into_cgroup = {'false' if move else 'true'}\nenabled = {'false' if off else 'true'}\n"
    a = Agent(root, config=config, env={"BOLT_METRICS_LISTEN": ""}).start(timeout=120)
    try:
        ch = ab.channel(a)
        stub = bolt_pb2_grpc.BoltStub(ch)
        info = await stub.GetAgentInfo(pb.GetAgentInfoRequest())
        await ab.throughput(stub, total=max(50, executions // 10), workers=16)  # warm-up
        lat = sorted(await ab.latency(stub, n=min(300, executions)))
        tput = await ab.throughput(stub, total=executions, workers=64)
        await ch.close()
        entries = {
            json.loads(p.read_text()).get("cgroup_entry", "")
            for p in list((a.data_dir / "executions").glob("*/exit.json"))[:50]
        }
    finally:
        a.stop()
    return {
        "label": label,
        "caps_mode": info.caps_mode,
        "entry": ",".join(sorted(e or "none" for e in entries)),
        "p50_ms": statistics.median(lat),
        "p99_ms": lat[max(0, int(len(lat) * 0.99) - 1)],
        "exec_per_s": tput,
    }


def table(files: list[Path]) -> None:
    rows = [json.loads(f.read_text()) for f in files if f.exists()]
    head = ("where", "hierarchy", "action enters by", "Execute->RUNNING p50", "p99", "short actions")
    cells = [
        (r["label"], r["caps_mode"], r["entry"], f"{r['p50_ms']:.2f} ms", f"{r['p99_ms']:.2f} ms", f"{r['exec_per_s']:.0f} exec/s")
        for r in rows
    ]
    widths = [max(len(str(c[i])) for c in [head, *cells]) for i in range(len(head))]
    print()
    for line in [head, tuple("-" * w for w in widths), *cells]:
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths)))
    print("\n(created = clone3 CLONE_INTO_CGROUP, no cgroup.procs write; moved = one cgroup.procs write per hierarchy;
 none = caps off, no cgroup at all)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("label")
    m.add_argument("out", type=Path)
    how = m.add_mutually_exclusive_group()
    how.add_argument("--move", action="store_true", help="caps.clone_into_cgroup = false")
    how.add_argument("--off", action="store_true", help="caps.enabled = false")
    m.add_argument("--executions", type=int, default=3000)
    t = sub.add_parser("table")
    t.add_argument("files", type=Path, nargs="+")
    args = p.parse_args()
    if args.cmd == "measure":
        row = asyncio.run(measure(args.label, args.move, args.off, args.executions))
        args.out.write_text(json.dumps(row))
        table([args.out])
    else:
        table(args.files)


if __name__ == "__main__":
    main()
