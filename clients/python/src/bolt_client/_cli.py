"""The ``bolt`` command (installed with the package).

Certificates come from ``--ca/--cert/--key``, else ``BOLT_CA``/``BOLT_CERT``/
``BOLT_KEY``, else the config file (``--config``, ``BOLT_CLIENT_CONFIG`` or
``~/.config/bolt/config.yaml``). ``--json`` prints machine-readable output.

Exit status (documented in the README; scripts rely on it):

=========  =====================================================================
0          success
1          the action or a fleet run failed (no exit code of its own to pass on)
N          ``exec --follow`` and ``tail``: the action's own exit code N
2          usage: bad flags or arguments, unreadable files, empty inventory
124        the action timed out (TIMED_OUT), as ``timeout(1)``
125        bolt could not get an answer: agent unreachable, TLS, refused call
128+n      the action was killed by signal n (KILLED, OOM_KILLED)
130        interrupted (Ctrl-C); started executions keep running
=========  =====================================================================
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import enum
import io
import json
import os
import sys
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from ._client import BoltClient, parse_action_ref
from ._exceptions import BoltError, ConfigError
from ._fleet import Fleet, FleetOptions, FleetProgress, FleetReport, Handle, InstanceReport
from ._inventory import Instance, InventoryProvider, load_inventory
from ._models import Execution, OutputChunk, State, Stream

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMED_OUT = 124
EXIT_CLIENT = 125
EXIT_SIGNAL_BASE = 128
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """The command line (or a file it names) is wrong: exit 2, no traceback."""


# --- output helpers -------------------------------------------------------------


def jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if hasattr(obj, "to_dict"):
            return jsonable(obj.to_dict())
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, timedelta):
        return obj.total_seconds()
    if isinstance(obj, bytes):
        return obj.decode("utf-8", errors="replace")
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def print_json(obj: Any, out: TextIO | None = None) -> None:
    (out or sys.stdout).write(json.dumps(jsonable(obj), indent=2) + "\n")


def print_json_line(obj: Any) -> None:
    """One JSON object per line (JSON Lines), for streams a program reads as they come."""
    sys.stdout.write(json.dumps(jsonable(obj), separators=(",", ":")) + "\n")
    sys.stdout.flush()


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO | None = None) -> None:
    """Aligned columns (rich's Table, no box): never wrapped, so that scripts can
    split lines; a bold header only on a terminal."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    o = out or sys.stdout
    tty = o.isatty()
    t = Table(box=None, pad_edge=False, show_edge=False, header_style="bold" if tty else "", highlight=False)
    for h in headers:
        t.add_column(h, no_wrap=True, overflow="ignore")
    for r in rows:
        t.add_row(*(Text("" if c is None else str(c)) for c in r))
    buf = io.StringIO()
    Console(file=buf, width=1_000_000, color_system="standard" if tty else None, force_terminal=tty).print(t)
    o.write("".join(line.rstrip() + "\n" for line in buf.getvalue().splitlines()))


def _secs(td: timedelta | float | None) -> str:
    if td is None:
        return "-"
    s = td.total_seconds() if isinstance(td, timedelta) else td
    return f"{s:.2f}s"


def _ts(dt: datetime | None) -> str:
    return dt.isoformat(timespec="milliseconds") if dt else "-"


def _one_line(text: str, width: int = 60) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    return last if len(last) <= width else last[: width - 1] + "…"


def print_execution(e: Execution, out: TextIO | None = None) -> None:
    o = out or sys.stdout
    rows: list[tuple[str, Any]] = [
        ("execution", e.execution_id),
        ("action", f"{e.pack}/{e.action}" + (f" ({e.pack_version})" if e.pack_version else "")),
        ("state", e.state.value),
        ("exit code", e.exit_code if e.exit_code is not None else "-"),
        ("signal", e.signal if e.signal is not None else "-"),
        ("args", " ".join(f"{k}={v}" for k, v in sorted(e.args.items())) or "-"),
        ("caller", e.caller or "-"),
        ("created", _ts(e.created_at)),
        ("started", _ts(e.started_at)),
        ("ended", _ts(e.ended_at)),
        ("duration", _secs(e.duration)),
        ("cpu time", _secs(e.cpu_time)),
        ("peak memory", f"{e.peak_memory_bytes} B"),
        ("output", f"stdout {e.stdout_bytes} B, stderr {e.stderr_bytes} B" + (" (truncated)" if e.output_truncated else "")),
    ]
    if e.error:
        rows.append(("error", e.error))
    if e.killed_by:
        rows.append(("killed by", e.killed_by))
    for k, v in rows:
        o.write(f"{k + ':':<13} {v}\n")


def write_chunk(c: OutputChunk) -> None:
    stream = sys.stderr if c.stream in (Stream.STDERR, Stream.SYSTEM) else sys.stdout
    stream.buffer.write(c.data)
    stream.buffer.flush()


# --- arguments --------------------------------------------------------------------


def _args(pairs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in pairs or []:
        k, sep, v = p.partition("=")
        if not sep or not k:
            raise UsageError(f"bad argument {p!r}: expected -a NAME=VALUE")
        out[k] = v
    return out


def _action_ref(ref: str) -> tuple[str, str]:
    try:
        return parse_action_ref(ref)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _common(p: argparse.ArgumentParser, sub: bool) -> None:
    d: Any = argparse.SUPPRESS if sub else None
    g = p.add_argument_group("connection")
    g.add_argument("--ca", default=d, help="CA certificate that signed the agents' certificates (env BOLT_CA)")
    g.add_argument("--cert", default=d, help="client certificate (env BOLT_CERT)")
    g.add_argument("--key", default=d, help="client private key (env BOLT_KEY)")
    g.add_argument("--config", default=d, help="config file (env BOLT_CLIENT_CONFIG; default ~/.config/bolt/config.yaml)")
    g.add_argument("--profile", default=d, help="a named profile of the config file (env BOLT_PROFILE)")
    g.add_argument("--server-name", default=d, help="name to verify in the agent certificate")
    g.add_argument("--timeout", type=float, default=d, help="deadline of each call in seconds (default 10)")
    g.add_argument("--json", action="store_true", default=False if not sub else argparse.SUPPRESS, help="JSON output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bolt",
        description="Talk to Bolt agents: one host, or a fleet.",
        epilog="exit status: 0 ok, 1 failed, N the action's own code, 2 usage, 124 timed out, "
        "125 no answer from the agent, 128+n killed by signal n, 130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"bolt {_version()}")
    _common(parser, sub=False)
    sp = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def cmd(name: str, help_: str) -> argparse.ArgumentParser:
        p = sp.add_parser(name, help=help_, description=help_)
        _common(p, sub=True)
        return p

    p = cmd("actions", "list the actions an agent offers")
    p.add_argument("host")
    p.add_argument("--pack", default="")

    p = cmd("exec", "start an action (and with --follow, stream its output and wait)")
    p.add_argument("host")
    p.add_argument("action", metavar="PACK/ACTION")
    p.add_argument("-a", "--arg", action="append", metavar="NAME=VALUE", help="argument (repeatable)")
    p.add_argument("-f", "--follow", action="store_true", help="stream output until it ends; exit with its code")
    p.add_argument("--action-timeout", type=float, help="run time limit in seconds (default: the action's)")
    p.add_argument("--idempotency-key", help="retrying with the same key never runs twice")

    p = cmd("status", "show one execution")
    p.add_argument("host")
    p.add_argument("execution_id")

    p = cmd("tail", "print an execution's output (follows it until it ends)")
    p.add_argument("host")
    p.add_argument("execution_id")
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--no-follow", action="store_true", help="print what there is now and stop")

    p = cmd("kill", "end an execution (SIGTERM to its tree, SIGKILL after the grace)")
    p.add_argument("host")
    p.add_argument("execution_id")
    p.add_argument("--grace", type=float, help="seconds between SIGTERM and SIGKILL")

    p = cmd("history", "list an agent's executions, newest first")
    p.add_argument("host")
    p.add_argument("--pack", default="")
    p.add_argument("--action", dest="action_name", default="")
    p.add_argument("--state", action="append", help="only this state (repeatable)")
    p.add_argument("--caller", default="")
    p.add_argument("--limit", type=int, default=20)

    p = cmd("health", "is the agent ready (exit 1 when not serving)")
    p.add_argument("host")

    p = cmd("info", "everything the agent knows about itself")
    p.add_argument("host")

    fp = sp.add_parser("fleet", help="act on many instances", description="act on many instances")
    fsp = fp.add_subparsers(dest="fleet_cmd", required=True, metavar="FLEET_COMMAND")

    def fcmd(name: str, help_: str) -> argparse.ArgumentParser:
        q = fsp.add_parser(name, help=help_, description=help_)
        _common(q, sub=True)
        return q

    inv_help = "FILE (.yaml/.json), hosts:H1,H2, ec2:region=R,tag:app=X[,address=public], clouddriver:url=U,app=A"
    q = fcmd("run", "roll an action over an inventory with a strategy and a failure budget")
    q.add_argument("--inventory", "-i", required=True, help=inv_help)
    q.add_argument("action", metavar="PACK/ACTION")
    q.add_argument("-a", "--arg", action="append", metavar="NAME=VALUE")
    q.add_argument("--strategy", "-s", default="one-at-a-time", help="one-at-a-time (default), az, region, parallel")
    q.add_argument("--max-concurrency", "-c", help="most instances running at once in a group: N or P%% of it")
    q.add_argument("--max-errors", "-e", default="0", help="errors allowed before stopping: N or P%% (default 0)")
    q.add_argument("--health-gate", action="store_true", help="check Health before each instance")
    q.add_argument("--instance-timeout", type=float, help="run time limit per instance, seconds")
    q.add_argument("--run-id", help="re-use to resume a run without re-running started instances")
    q.add_argument("--no-progress", action="store_true", help="no live progress on stderr")
    q.add_argument("--allow-empty", action="store_true", help="an empty inventory is not an error (exit 0)")

    q = fcmd("submit", "start an action everywhere and print handles (JSON) to check back later")
    q.add_argument("--inventory", "-i", required=True, help=inv_help)
    q.add_argument("action", metavar="PACK/ACTION")
    q.add_argument("-a", "--arg", action="append", metavar="NAME=VALUE")
    q.add_argument("--action-timeout", type=float, help="run time limit per instance, seconds")
    q.add_argument("--max-concurrency", "-c", help="most Executes in flight at once: N or P%% of the inventory")
    q.add_argument("--health-gate", action="store_true", help="check Health first; skip instances not serving")
    q.add_argument("--run-id")
    q.add_argument("--allow-empty", action="store_true", help="an empty inventory is not an error (exit 0)")

    for name, help_ in (
        ("status", "state of submitted executions"),
        ("wait", "wait for submitted executions to end"),
        ("kill", "kill submitted executions"),
    ):
        q = fcmd(name, help_)
        q.add_argument("handles", help="file written by `bolt fleet submit` (- for stdin)")
        if name == "wait":
            q.add_argument("--wait-timeout", type=float)

    q = fcmd("health", "Health of every instance of an inventory")
    q.add_argument("--inventory", "-i", required=True, help=inv_help)
    q.add_argument("--allow-empty", action="store_true", help="an empty inventory is not an error (exit 0)")

    p = sp.add_parser(
        "completion",
        help="print a shell completion script",
        description="print a shell completion script, e.g. bolt completion bash > /etc/bash_completion.d/bolt",
    )
    p.add_argument("shell", choices=["bash", "zsh", "tcsh"])
    return parser


# --- commands ------------------------------------------------------------------------


def _connection(ns: argparse.Namespace) -> dict[str, Any]:
    """The connection flags, for the client to resolve with the environment and
    the config file (read once, by the client)."""
    return {
        "ca": ns.ca, "cert": ns.cert, "key": ns.key, "server_name": ns.server_name, "timeout": ns.timeout,
        "config_file": ns.config, "profile": ns.profile,
    }


def _client(ns: argparse.Namespace) -> BoltClient:
    return BoltClient(ns.host, **_connection(ns))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bolt-client")
    except PackageNotFoundError:
        from . import __version__

        return __version__


def _exit_for(e: Execution) -> int:
    """The CLI's exit status for an ended execution (see the module docstring)."""
    if e.state is State.SUCCEEDED:
        return EXIT_OK
    if e.state is State.TIMED_OUT:
        return EXIT_TIMED_OUT
    if e.state in (State.KILLED, State.OOM_KILLED) and e.signal:
        return EXIT_SIGNAL_BASE + e.signal
    if e.exit_code and 0 < e.exit_code < 256:
        return e.exit_code
    return EXIT_FAILED


def cmd_actions(ns: argparse.Namespace) -> int:
    with _client(ns) as c:
        actions = c.list_actions(ns.pack)
    if ns.json:
        print_json(actions)
        return 0
    rows = []
    for a in actions:
        params = " ".join(
            f"{p.name}{'' if p.required else '?'}:{p.type.value.lower()}" for p in a.params
        )
        rows.append((a.ref, a.pack_version, "yes" if a.read_only else "no", _secs(a.timeout), params, a.description))
    table(["ACTION", "VERSION", "READ-ONLY", "TIMEOUT", "PARAMS", "DESCRIPTION"], rows)
    return 0


def cmd_exec(ns: argparse.Namespace) -> int:
    pack, action = _action_ref(ns.action)
    args = _args(ns.arg)
    with _client(ns) as c:
        r = c.execute(pack, action, args, idempotency_key=ns.idempotency_key, action_timeout=ns.action_timeout)
        if not ns.follow:
            if ns.json:
                print_json(r)
            else:
                print(r.execution_id)
            return 0
        if not ns.json:
            sys.stderr.write(f"bolt: {c.target}: started {ns.action} as {r.execution_id}\n")
            sys.stderr.flush()
        try:
            final = None
            for chunk in c.tail(r.execution_id):
                if chunk.end:
                    final = chunk.execution
                    break
                if not ns.json:
                    write_chunk(chunk)
        except KeyboardInterrupt:
            sys.stderr.write(
                f"\nbolt: interrupted; {r.execution_id} keeps running (bolt kill {ns.host} {r.execution_id})\n"
            )
            return EXIT_INTERRUPTED
        final = final or c.get_execution(r.execution_id)
    if ns.json:
        print_json(final)
    else:
        code = f" exit code {final.exit_code}" if final.exit_code is not None else ""
        sys.stderr.write(f"bolt: {r.execution_id} {final.state.value}{code} in {_secs(final.duration)}\n")
    return _exit_for(final)


def cmd_status(ns: argparse.Namespace) -> int:
    with _client(ns) as c:
        e = c.get_execution(ns.execution_id)
    if ns.json:
        print_json(e)
    else:
        print_execution(e)
    return 0


def cmd_tail(ns: argparse.Namespace) -> int:
    with _client(ns) as c:
        final = None
        try:
            for chunk in c.tail(ns.execution_id, offset=ns.offset, follow=not ns.no_follow):
                if chunk.end:
                    final = chunk.execution
                    break
                if ns.json:
                    print_json_line(chunk)
                else:
                    write_chunk(chunk)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
    if final is not None:
        if ns.json:
            print_json_line({"end": True, "execution": jsonable(final)})
        else:
            sys.stderr.write(f"bolt: {final.execution_id} {final.state.value}\n")
        return _exit_for(final)
    return 0


def cmd_kill(ns: argparse.Namespace) -> int:
    with _client(ns) as c:
        k = c.kill(ns.execution_id, grace=ns.grace)
    if ns.json:
        print_json(k)
    else:
        print(f"{ns.execution_id}: {'already ended' if k.already_ended else 'kill sent'} ({k.state.value})")
    return 0


def cmd_history(ns: argparse.Namespace) -> int:
    with _client(ns) as c:
        execs = list(
            c.iter_executions(
                limit=ns.limit,
                page_size=min(max(ns.limit, 1), 1000),
                pack=ns.pack,
                action=ns.action_name,
                states=[s.upper() for s in ns.state or []],
                caller=ns.caller,
            )
        )
    if ns.json:
        print_json(execs)
        return 0
    table(
        ["EXECUTION", "ACTION", "STATE", "EXIT", "CREATED", "DURATION", "CALLER"],
        [
            (
                e.execution_id,
                f"{e.pack}/{e.action}",
                e.state.value,
                e.exit_code if e.exit_code is not None else "-",
                _ts(e.created_at),
                _secs(e.duration),
                e.caller,
            )
            for e in execs
        ],
    )
    return 0


def cmd_health(ns: argparse.Namespace) -> int:
    with _client(ns) as c:
        h = c.health()
    if ns.json:
        print_json(h)
    else:
        print(f"{c.target}: {h.status.value} running={h.running} caps_enforced={str(h.caps_enforced).lower()}")
        for p in h.problems:
            print(f"  problem: {p}")
        for pe in h.pack_errors:
            print(f"  pack error: {pe.source}: {pe.error}")
    return 0 if h.ok else 1


def cmd_info(ns: argparse.Namespace) -> int:
    with _client(ns) as c:
        info = c.agent_info()
    if ns.json:
        print_json(info)
        return 0
    i = info.instance
    print(f"agent:       bolt-agent {info.version}, up {_secs(info.uptime)}, {info.status.value}")
    print(f"instance:    {i.instance_id} app={i.app} az={i.availability_zone} region={i.region} stage={i.stage} host={i.hostname}")
    print(f"caps:        {info.caps_mode} (enforced={str(info.caps_enforced).lower()})")
    print(f"running:     {info.running}")
    print(f"data disk:   {info.data_disk_free_bytes} of {info.data_disk_total_bytes} bytes free")
    for p in info.packs:
        print(f"pack:        {p.name} {p.version} ({p.actions} actions) {p.source}")
    for pe in info.pack_errors:
        print(f"pack error:  {pe.source}: {pe.error}")
    return 0


# --- fleet ---------------------------------------------------------------------------


def _fleet(ns: argparse.Namespace) -> Fleet:
    return Fleet(**_connection(ns))


def _instances(ns: argparse.Namespace) -> list[Instance]:
    """The inventory's instances, listed once; an empty one is a usage error (a typo
    in an EC2 tag must not "succeed") unless --allow-empty."""
    provider: InventoryProvider = load_inventory(ns.inventory)
    instances = list(provider.instances())
    if not instances and not ns.allow_empty:
        raise UsageError(
            f"the inventory {ns.inventory!r} lists no instances (check its filters; --allow-empty accepts that)"
        )
    return instances


def print_fleet_report(report: FleetReport, out: TextIO | None = None) -> None:
    o = out or sys.stdout
    table(
        ["INSTANCE", "ADDRESS", "AZ", "REGION", "OUTCOME", "EXIT", "DURATION", "EXECUTION", "DETAIL"],
        [
            (
                r.instance.id,
                r.instance.address,
                r.instance.availability_zone or "-",
                r.instance.region or "-",
                r.outcome.value,
                r.exit_code if r.exit_code is not None else "-",
                _secs(r.duration),
                r.execution_id or "-",
                _one_line(r.error) if r.error else _one_line(r.output_excerpt),
            )
            for r in report.reports
        ],
        o,
    )
    counts = ", ".join(f"{n} {k}" for k, n in sorted(report.counts().items()))
    stopped = f"STOPPED by failure budget ({report.errors} errors > {report.allowed_errors} allowed)"
    o.write(
        f"\n{len(report.reports)} instances: {counts}; "
        f"{stopped if report.stopped else f'{report.errors} errors ({report.allowed_errors} allowed)'}; "
        f"{report.duration:.2f}s; run id {report.run_id}\n"
    )


class _Progress:
    """Live progress on stderr: a rich display on a terminal, plain lines otherwise."""

    def __init__(self, title: str, enabled: bool) -> None:
        self.title = title
        self.enabled = enabled
        self.live: Any = None
        self.done = 0
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.live import Live

            self.live = Live(console=Console(stderr=True), refresh_per_second=8, transient=False)

    def __enter__(self) -> "_Progress":
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def __call__(self, p: FleetProgress) -> None:
        if not self.enabled:
            return
        counts = "  ".join(f"{k} {v}" for k, v in sorted(p.counts.items()))
        where = f"group {p.group_index}/{p.groups}: {p.group}" if p.groups else ""
        budget = f"errors {p.errors}/{p.allowed_errors}" + ("  STOPPED" if p.stopped else "")
        if self.live is not None:
            from rich.text import Text

            run = ", ".join(p.running[:8]) + (f" (+{len(p.running) - 8})" if len(p.running) > 8 else "")
            self.live.update(Text(f"{self.title}  {where}\n{counts}\n{budget}\nrunning: {run or '-'}"))
            return
        if p.last is not None:
            self.done += 1
            r: InstanceReport = p.last
            sys.stderr.write(
                f"[{self.done}/{p.total}] {r.instance.id} ({r.instance.availability_zone or '-'}/"
                f"{r.instance.region or '-'}) {r.outcome.value} {_secs(r.duration)}  | {counts} | {budget}\n"
            )
            sys.stderr.flush()


def cmd_fleet_run(ns: argparse.Namespace) -> int:
    pack, action = _action_ref(ns.action)
    opts = FleetOptions(
        strategy=ns.strategy,
        max_concurrency=ns.max_concurrency,
        max_errors=ns.max_errors,
        health_gate=ns.health_gate,
        instance_timeout=ns.instance_timeout,
    )
    args = _args(ns.arg)
    instances = _instances(ns)

    async def go(progress: _Progress) -> FleetReport:
        async with _fleet(ns) as fleet:
            return await fleet.run(
                instances, pack, action, args, options=opts, on_progress=progress, run_id=ns.run_id
            )

    run_id = ns.run_id or "fleet-" + uuid.uuid4().hex[:16]
    ns.run_id = run_id
    title = f"bolt fleet run {ns.action} strategy={opts.strategy.value} run id {run_id}"
    try:
        with _Progress(title, enabled=not ns.no_progress) as progress:
            report = asyncio.run(go(progress))
    except KeyboardInterrupt:
        sys.stderr.write(
            f"\nbolt: interrupted; executions already started keep running. Re-run with --run-id {run_id} "
            "to re-attach to them (nothing runs twice) and continue the rollout.\n"
        )
        return EXIT_INTERRUPTED
    if ns.json:
        print_json(report.to_dict())
    else:
        print_fleet_report(report)
    return 0 if report.ok else 1


def _read_handles(path: str) -> list[Handle]:
    where = "stdin" if path == "-" else path
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read handles file {where}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"handles file {where} is not UTF-8 text") from None
    try:
        data = json.loads(text)
        if isinstance(data, dict):
            data = data.get("handles", [])
        if not isinstance(data, list):
            raise TypeError("expected a list of handles")
        return [Handle.from_dict(d) for d in data]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise UsageError(
            f"{where} is not a handles file written by `bolt fleet submit` ({type(exc).__name__}: {exc})"
        ) from None


def _print_reports(ns: argparse.Namespace, reports: list[InstanceReport]) -> None:
    if ns.json:
        print_json([r.to_dict() for r in reports])
        return
    table(
        ["INSTANCE", "ADDRESS", "STATE", "EXIT", "DURATION", "EXECUTION", "DETAIL"],
        [
            (
                r.instance.id,
                r.instance.address,
                r.outcome.value,
                r.exit_code if r.exit_code is not None else "-",
                _secs(r.duration),
                r.execution_id or "-",
                _one_line(r.error) if r.error else _one_line(r.output_excerpt),
            )
            for r in reports
        ],
    )


def cmd_fleet_submit(ns: argparse.Namespace) -> int:
    pack, action = _action_ref(ns.action)
    args = _args(ns.arg)
    opts = FleetOptions(max_concurrency=ns.max_concurrency, health_gate=ns.health_gate)
    instances = _instances(ns)

    async def go() -> list[Handle]:
        async with _fleet(ns) as fleet:
            return await fleet.submit(
                instances, pack, action, args, options=opts, action_timeout=ns.action_timeout, run_id=ns.run_id
            )

    handles = asyncio.run(go())
    print_json({"handles": [h.to_dict() for h in handles]})
    return 0 if all(h.execution_id for h in handles) else 1


def cmd_fleet_check(ns: argparse.Namespace) -> int:
    handles = _read_handles(ns.handles)

    async def go() -> Any:
        async with _fleet(ns) as fleet:
            if ns.fleet_cmd == "status":
                return await fleet.status(handles)
            if ns.fleet_cmd == "wait":
                return await fleet.wait(handles, timeout=ns.wait_timeout)
            return await fleet.kill(handles)

    try:
        result = asyncio.run(go())
    except KeyboardInterrupt:
        if ns.fleet_cmd == "wait":
            sys.stderr.write(
                f"\nbolt: interrupted; the executions keep running (bolt fleet kill {ns.handles} stops them)\n"
            )
        return EXIT_INTERRUPTED
    if ns.fleet_cmd == "kill":
        rows = []
        for h, k in zip(handles, result):
            if k is None:
                what = f"never started: {_one_line(h.error, 80)}" if h.error else "never started"
            elif isinstance(k, BoltError):
                what = str(k)
            else:
                what = "already ended" if k.already_ended else "kill sent"
            rows.append((h.instance.id, h.execution_id or "-", what))
        if ns.json:
            print_json([{"instance": h.instance.id, "execution_id": h.execution_id, "result": r[2]} for h, r in zip(handles, rows)])
        else:
            table(["INSTANCE", "EXECUTION", "RESULT"], rows)
        return EXIT_OK if not any(isinstance(k, BoltError) for k in result) else EXIT_FAILED
    _print_reports(ns, result)
    if ns.fleet_cmd == "wait":
        return 0 if all(r.outcome.value == "SUCCEEDED" for r in result) else 1
    return 0


def cmd_fleet_health(ns: argparse.Namespace) -> int:
    instances = _instances(ns)

    async def go() -> dict[str, Any]:
        async with _fleet(ns) as fleet:
            return await fleet.health(instances)

    res = asyncio.run(go())
    bad = 0
    rows = []
    for i in instances:
        h = res[i.id]
        if isinstance(h, BoltError):
            bad += 1
            rows.append((i.id, i.address, "UNREACHABLE", "-", _one_line(str(h), 80)))
        else:
            bad += 0 if h.ok else 1
            rows.append((i.id, i.address, h.status.value, h.running, "; ".join(h.problems)))
    if ns.json:
        print_json([dict(zip(["instance", "address", "status", "running", "detail"], r)) for r in rows])
    else:
        table(["INSTANCE", "ADDRESS", "STATUS", "RUNNING", "DETAIL"], rows)
    return 0 if bad == 0 else 1


COMMANDS = {
    "actions": cmd_actions,
    "exec": cmd_exec,
    "status": cmd_status,
    "tail": cmd_tail,
    "kill": cmd_kill,
    "history": cmd_history,
    "health": cmd_health,
    "info": cmd_info,
}
FLEET = {
    "run": cmd_fleet_run,
    "submit": cmd_fleet_submit,
    "status": cmd_fleet_check,
    "wait": cmd_fleet_check,
    "kill": cmd_fleet_check,
    "health": cmd_fleet_health,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.cmd == "completion":
        import shtab

        sys.stdout.write(shtab.complete(parser, shell=ns.shell))
        return EXIT_OK
    try:
        fn = FLEET[ns.fleet_cmd] if ns.cmd == "fleet" else COMMANDS[ns.cmd]
        return fn(ns)
    except (UsageError, ConfigError, ValueError) as exc:
        sys.stderr.write(f"bolt: error: {exc}\n")
        return EXIT_USAGE
    except BoltError as exc:
        sys.stderr.write(f"bolt: error: {exc}\n")
        return EXIT_CLIENT
    except KeyboardInterrupt:
        sys.stderr.write("\nbolt: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`bolt history | head`): quiet, like other tools.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - no flush error at exit
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
