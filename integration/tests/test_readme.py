"""The main job as a newcomer types it: `make run` (scripts/run-dev.sh, with
its relative paths, run from the repository root), then the commands of the
README ("Calling an agent with grpcurl", "Clients") and the ones `make run`
prints (scripts/how-to-call.sh), run as written through bash.

Also the paths a user may type that other tests never use (each test starts
the agent binary itself): relative folders with another working folder, a
space in the data folder, a symlinked data folder, a trailing slash.

The README's blocks are parsed, not copied: if a block this test reads
disappears or gains a command it does not know, the test fails and says so.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

from bolt_client import BoltClient, Execution, State, Stream
from bolt_testing import EXAMPLE_PACKS, REPO, agent_bin, make_certs
from bolt_testing.s3 import free_port
from util import client_for, follow, text, wait_state, wait_until

README = REPO / "README.md"
README_ADDR = "127.0.0.1:7443"
_grpcurl_env = os.environ.get("GRPCURL") or shutil.which("grpcurl") or ""
GRPCURL = str(Path(_grpcurl_env).resolve()) if _grpcurl_env else ""
NO_GRPCURL = (
    "" if GRPCURL and os.access(GRPCURL, os.X_OK)
    else f"grpcurl is not available (GRPCURL={os.environ.get('GRPCURL', '')!r}; `make tools` installs it with Go): "
    "skipping the grpcurl commands of the README and of `make run`"
)
EXAMPLE_PACK_NAMES = sorted(p.name for p in EXAMPLE_PACKS.iterdir() if (p / "pack.toml").exists())


# --------------------------------------------------------------- the README


def readme_section(title: str) -> str:
    text_ = README.read_text()
    m = re.search(rf"^## {re.escape(title)}[ \t]*\n(.*?)(?=^## |\Z)", text_, re.M | re.S)
    if m is None:
        pytest.fail(f"README.md has no section '## {title}' any more: update {Path(__file__).name} with it")
    return m.group(1)


def sh_blocks(title: str) -> list[str]:
    blocks = re.findall(r"^```sh[ \t]*\n(.*?)^```", readme_section(title), re.M | re.S)
    if not blocks:
        pytest.fail(f"README.md's section '{title}' has no ```sh block any more: update {Path(__file__).name}")
    return blocks


def command_lines(block: str) -> list[str]:
    """Logical lines of a shell block: continuations joined, comments and blank lines dropped."""
    lines, cur = [], ""
    for raw in block.splitlines():
        if not cur and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if raw.rstrip().endswith("\\"):
            cur += raw.rstrip()[:-1] + " "
            continue
        lines.append((cur + raw).strip())
        cur = ""
    if cur:
        pytest.fail(f"README.md: a shell line ends with a continuation and nothing follows: {cur!r}")
    return lines


def is_assignment(line: str) -> bool:
    return re.match(r"^(export\s+)?[A-Za-z_][A-Za-z0-9_]*=", line) is not None


def readme_grpcurl_block() -> tuple[list[str], list[str]]:
    """(variable lines, command lines) of "Calling an agent with grpcurl"."""
    blocks = [b for b in sh_blocks("Calling an agent with grpcurl") if "$G" in b]
    if len(blocks) != 1:
        pytest.fail(f"README.md: expected one ```sh block calling $G in 'Calling an agent with grpcurl', found {len(blocks)}")
    lines = command_lines(blocks[0])
    variables = [ln for ln in lines if is_assignment(ln)]
    commands = [ln for ln in lines if not is_assignment(ln)]
    names = {ln.split("=", 1)[0] for ln in variables}
    if names != {"C", "G"}:
        pytest.fail(f"README.md: the grpcurl block should set C and G, it sets {sorted(names)}: {variables}")
    if "-cacert .dev/certs/ca.crt" not in next(ln for ln in variables if ln.startswith("C=")):
        pytest.fail(f"README.md: C= no longer uses make run's certificates in .dev/certs: {variables}")
    for ln in commands:
        if not ln.startswith("$G $C ") or README_ADDR not in ln:
            pytest.fail(f"README.md: a grpcurl command this test cannot read (not `$G $C ... {README_ADDR} ...`): {ln!r}")
    if len(commands) < 9:
        pytest.fail(f"README.md: the grpcurl block lost commands (found {len(commands)}): {commands}")
    return variables, commands


def readme_bolt_block() -> list[str]:
    blocks = [b for b in sh_blocks("Clients") if "bolt exec" in b]
    if len(blocks) != 1:
        pytest.fail(f"README.md: expected one ```sh block with `bolt exec` in 'Clients', found {len(blocks)}")
    lines = command_lines(blocks[0])
    if not any(ln.startswith("pip install ") and "clients/python" in ln for ln in lines):
        pytest.fail(f"README.md: the Clients block no longer installs ./clients/python: {lines}")
    if not any(ln.startswith("export BOLT_CA=") for ln in lines):
        pytest.fail(f"README.md: the Clients block no longer exports BOLT_CA/BOLT_CERT/BOLT_KEY: {lines}")
    for verb in ("exec", "history"):
        if not any(ln.startswith(f"bolt {verb} ") for ln in lines):
            pytest.fail(f"README.md: the Clients block has no `bolt {verb}` any more: {lines}")
    return lines


def test_the_readme_blocks_are_where_this_test_reads_them() -> None:
    """Runs without an agent or grpcurl: the README and this test cannot drift apart unseen."""
    variables, commands = readme_grpcurl_block()
    rpcs = [last_word(c) for c in commands]
    for rpc in ("list", "bolt.v1.Bolt/Execute", "bolt.v1.Bolt/StreamOutput", "bolt.v1.Bolt/Kill"):
        assert rpc in rpcs, f"README.md's grpcurl block no longer calls {rpc}: {commands}"
    readme_bolt_block()


# ------------------------------------------------------- what actions print


def progress_stdout(args: dict[str, str]) -> str:
    n, label = int(args.get("seconds", "60")), args.get("label", "task")
    return "".join(f"{label}: {i}/{n} ({100 * i // n}%)\n" for i in range(1, n + 1))


def check_output(pack: str, action: str, args: dict[str, str], stdout: str, stderr: str, what: str) -> None:
    """The output examples/packs/<pack> promises for these arguments."""
    if (pack, action) == ("demo", "progress"):
        assert stdout == progress_stdout(args), f"{what}: stdout {stdout!r}"
        assert f"{args.get('label', 'task')}: done" in stderr, f"{what}: stderr {stderr!r}"
    elif (pack, action) == ("disk-usage", "top-dirs"):
        path, count = args["path"].rstrip("/") or "/", int(args.get("count", "10"))
        lines = stdout.splitlines()
        assert lines and lines[0] == f"largest folders under {args['path']} (KiB):", f"{what}: stdout {stdout!r}"
        sizes = [ln.split("\t", 1) for ln in lines[1:]]
        assert 1 <= len(sizes) <= count + 1, f"{what}: stdout {stdout!r}"
        for size, folder in sizes:
            assert size.isdigit() and (folder == path or folder.startswith(path + "/")), f"{what}: line {size}\t{folder}"
        assert path in [f for _, f in sizes], f"{what}: no total for {path} in {stdout!r}"
        assert [int(s) for s, _ in sizes] == sorted((int(s) for s, _ in sizes), reverse=True), f"{what}: not biggest first"
    else:
        pytest.fail(f"{what}: this test does not know what {pack}/{action} prints: teach check_output()")


def check_execution(client: BoltClient, eid: str, what: str) -> Execution:
    """Follows an execution to its end: SUCCEEDED with the promised output."""
    chunks, end = follow(client, eid, timeout=120)
    assert end is not None, f"{what}: the stream of {eid} has no end message"
    e = end.execution
    assert e.state is State.SUCCEEDED, (
        f"{what}: {e.pack}/{e.action} {eid} ended {e.state}: {e.error!r}; output {text(chunks, None)!r}")
    check_output(e.pack, e.action, dict(e.args), text(chunks), text(chunks, Stream.STDERR), what)
    return e


# ---------------------------------------------------- make run's agent


def client_of(material: SimpleNamespace) -> BoltClient:
    """util.client_for() on the client material alone (it reads ca,
    client_cert, client_key and port, like bolt_testing.Agent has)."""
    return client_for(material)  # type: ignore[arg-type]


def _proc_stat(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()  # [state, ppid, pgrp, session, ...]


def _ident(pid: int) -> tuple[int, int] | None:
    """(pid, start time) of a live process: a pid cannot be mistaken after reuse."""
    st = _proc_stat(pid)
    return None if st is None or st[0] in ("Z", "X") else (pid, int(st[19]))


def _all_pids() -> list[int]:
    return [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit()]


class DevAgent:
    """`bash scripts/run-dev.sh` from the repository root, as `make run` runs it."""

    def __init__(self, out_dir: Path) -> None:
        self.dev_rel = f".dev-test-{os.getpid()}"
        self.dev = REPO / self.dev_rel
        if self.dev.exists():
            shutil.rmtree(self.dev)
        self.addr = f"127.0.0.1:{free_port()}"
        self.stdout_path = out_dir / "run-dev.stdout"
        self.stderr_path = out_dir / "run-dev.stderr"
        env = {
            **os.environ,
            "BOLT_DEV_DIR": self.dev_rel,
            "BOLT_DEV_LISTEN": self.addr,
            "BOLT_AGENT_BIN": str(agent_bin()),
            # The dev config keeps the default metrics port; not ours to take.
            "BOLT_METRICS_LISTEN": "127.0.0.1:0",
        }
        env.pop("GRPCURL", None)
        if not NO_GRPCURL:
            env["GRPCURL"] = GRPCURL
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                ["bash", "scripts/run-dev.sh"], cwd=REPO, env=env, stdout=out, stderr=err,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.pid = self.proc.pid
        self.seen: set[tuple[int, int]] = set()  # every process of this agent seen while it ran
        self.returncode: int | None = None

    def output(self) -> str:
        return (f"--- run-dev.sh stdout\n{self.stdout_path.read_text(errors='replace')[-5000:]}"
                f"\n--- stderr\n{self.stderr_path.read_text(errors='replace')[-10000:]}")

    def wait_serving(self, timeout: float = 30.0) -> None:
        addr_file = self.dev / "data" / "agent.addr"
        deadline = time.monotonic() + timeout
        while not (addr_file.exists() and addr_file.read_text().strip()):
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"run-dev.sh exited with {self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"run-dev.sh's agent did not serve within {timeout}s:\n{self.output()}")
            time.sleep(0.05)
        assert addr_file.read_text().strip() == self.addr, self.output()

    # The client material, shaped like bolt_testing.Agent for util.client_for().
    @property
    def client(self) -> SimpleNamespace:
        certs = self.dev / "certs"
        return SimpleNamespace(ca=certs / "ca.crt", client_cert=certs / "client.crt", client_key=certs / "client.key",
                               port=int(self.addr.rsplit(":", 1)[1]))

    def printed_commands(self) -> list[str]:
        """The command lines scripts/how-to-call.sh printed before the agent started."""
        out = self.stdout_path.read_text()
        m = re.search(r"Call it from another terminal:\n\n(.*?)\n\n", out, re.S)
        assert m, f"scripts/how-to-call.sh's text changed: no 'Call it from another terminal:' list:\n{out}"
        return [ln.strip() for ln in m.group(1).splitlines() if ln.strip()]

    def processes(self) -> set[tuple[int, int]]:
        """Live processes this agent started, as (pid, start time): its
        session (the spawner), the supervisors (working folder in the dev
        folder) and their sessions, every pid recorded in an execution folder,
        and every one seen before."""
        dev = str(self.dev.resolve())
        sessions = {self.pid}
        found: set[tuple[int, int]] = set()
        for pid in _all_pids():
            try:
                cwd = os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                continue
            if (cwd == dev or cwd.startswith(dev + "/")) and (ident := _ident(pid)):
                found.add(ident)
                sessions.add(pid)
        for f in list((self.dev / "data" / "executions").glob("*/*.pid")):
            try:
                pid, start = (int(x) for x in f.read_text().split()[:2])
            except (OSError, ValueError):
                continue
            if (ident := _ident(pid)) and start in (0, ident[1]):
                found.add(ident)
        for pid in _all_pids():
            st = _proc_stat(pid)
            if st is not None and int(st[3]) in sessions and (ident := _ident(pid)):
                found.add(ident)
        found |= self.seen
        return {i for i in found if i[0] != os.getpid() and _ident(i[0]) == i}

    def stop(self) -> tuple[int | None, set[tuple[int, int]]]:
        """SIGTERM, as Ctrl-C in `make run`'s terminal would; then what is left."""
        if self.proc is not None:
            self.seen |= self.processes()
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.returncode = self.proc.returncode
            self.proc = None
        try:
            wait_until(lambda: not self.processes(), 10, "every process of the agent to end")
        except AssertionError:
            pass
        return self.returncode, self.processes()

    def cleanup(self) -> None:
        _, left = self.stop()
        for pid, _start in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.dev, ignore_errors=True)


@pytest.fixture(scope="module")
def dev_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevAgent]:
    a = DevAgent(tmp_path_factory.mktemp("run-dev"))
    try:
        a.wait_serving()
        with client_of(a.client) as c:
            wait_until(lambda: c.health().ok, 10, "Health")
        yield a
    finally:
        a.cleanup()


# ----------------------------------------------------------- running commands


def last_word(line: str) -> str:
    return line.split()[-1]


def request_of(line: str) -> dict[str, Any]:
    m = re.search(r"-d '([^']*)'", line)
    return json.loads(m.group(1)) if m else {}


def json_messages(out: str) -> list[dict[str, Any]]:
    dec, i, msgs = json.JSONDecoder(), 0, []
    while True:
        while i < len(out) and out[i].isspace():
            i += 1
        if i >= len(out):
            return msgs
        obj, i = dec.raw_decode(out, i)
        msgs.append(obj)


def run_sh(variables: list[str], line: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """One command line through bash from the repository root, after the block's variables."""
    script = "\n".join([*variables, line]) + "\n"
    r = subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"exit {r.returncode}: {line}\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}"
    return r


class GrpcurlSession:
    """Runs grpcurl command lines in order, checking each answer; `<id>` is the
    execution id of the preceding Execute (Kill gets a running one)."""

    def __init__(self, agent: DevAgent, variables: list[str], what: str) -> None:
        self.agent, self.variables, self.what = agent, variables, what
        self.client = client_of(agent.client)
        self.last_id = ""
        self.started: list[str] = []  # by Execute lines, each checked at the end
        self.killed: list[str] = []

    def running_progress(self) -> str:
        """A demo/progress long enough to be running when Kill comes."""
        eid = self.client.execute("demo", "progress", {"seconds": 120}).execution_id
        wait_state(self.client, eid, {State.RUNNING}, 10)
        return eid

    def run(self, line: str) -> None:
        rpc = last_word(line)
        what = f"{self.what}: {line}"
        if "<id" in line:
            target = self.running_progress() if rpc == "bolt.v1.Bolt/Kill" else self.last_id
            assert target, f"{what}: no Execute before this line"
            line = re.sub(r"<id[^>\"]*>", target, line)
        self.agent.seen |= self.agent.processes()
        out = run_sh(self.variables, line).stdout
        msgs = json_messages(out) if rpc != "list" else []
        req = request_of(line)
        if rpc == "list":
            assert {"bolt.v1.Bolt", "grpc.health.v1.Health"} <= set(out.split()), f"{what}: {out}"
        elif rpc == "grpc.health.v1.Health/Check":
            assert msgs == [{"status": "SERVING"}], f"{what}: {out}"
        elif rpc == "bolt.v1.Bolt/ListActions":
            refs = {f"{a['pack']}/{a['name']}" for a in msgs[0].get("actions", [])}
            assert {"demo/progress", "disk-usage/top-dirs"} <= refs, f"{what}: {out}"
        elif rpc == "bolt.v1.Bolt/Execute":
            self.last_id = msgs[0]["executionId"]
            assert msgs[0].get("state") in ("STATE_PENDING", "STATE_RUNNING"), f"{what}: {out}"
            self.started.append(self.last_id)
        elif rpc == "bolt.v1.Bolt/StreamOutput":
            assert req.get("follow") is True and msgs and msgs[-1].get("end") is True, f"{what}: {out[-2000:]}"
            e = msgs[-1]["execution"]
            assert e["state"] == "STATE_SUCCEEDED", f"{what}: ended {e['state']}: {e.get('error')!r}"
            data = {s: b"".join(base64.b64decode(m.get("data", "")) for m in msgs[:-1] if m.get("stream", "STREAM_UNSPECIFIED") == s).decode()
                    for s in ("STREAM_STDOUT", "STREAM_STDERR")}
            check_output(e["pack"], e["action"], e.get("args", {}), data["STREAM_STDOUT"], data["STREAM_STDERR"], what)
        elif rpc == "bolt.v1.Bolt/GetExecution":
            assert msgs[0]["executionId"] == req["execution_id"], f"{what}: {out}"
            assert msgs[0]["state"] in ("STATE_RUNNING", "STATE_SUCCEEDED"), f"{what}: {out}"
        elif rpc == "bolt.v1.Bolt/Kill":
            assert msgs[0].get("alreadyEnded") is not True, f"{what}: the action was not running: {out}"
            e = wait_state(self.client, req["execution_id"], timeout=15)
            assert e.state is State.KILLED, f"{what}: {e.state} {e.error!r}"
            self.killed.append(req["execution_id"])
        elif rpc == "bolt.v1.Bolt/ListExecutions":
            execs = msgs[0].get("executions", [])
            if req.get("states"):
                # Nothing of make run's examples may fail.
                listed = [(x["executionId"], x["pack"], x["action"], x["state"], x.get("error")) for x in execs]
                assert all(x["state"] in req["states"] for x in execs), f"{what}: {listed}"
                assert not ({"STATE_FAILED", "STATE_LOST"} & set(req["states"])) or not execs, f"{what}: {listed}"
            else:
                assert set(self.started + self.killed) <= {x["executionId"] for x in execs}, f"{what}: {out[-2000:]}"
        elif rpc == "bolt.v1.Bolt/GetAgentInfo":
            info = msgs[0]
            assert set(EXAMPLE_PACK_NAMES) <= {p["name"] for p in info.get("packs", [])}, f"{what}: {out}"
            assert not info.get("packErrors"), f"{what}: {out}"
        else:
            pytest.fail(f"{what}: a call this test does not know ({rpc}): teach GrpcurlSession.run()")

    def check_started(self) -> None:
        assert self.started, f"{self.what}: no Execute"
        for eid in dict.fromkeys(self.started):
            check_execution(self.client, eid, f"{self.what}: Execute {eid}")


def substitute(line: str, agent: DevAgent) -> str:
    """The README's make-run paths and address, made the test's."""
    return line.replace(".dev/", agent.dev_rel + "/").replace(README_ADDR, agent.addr)


# ---------------------------------------------------------------- the tests


def test_make_run_starts_the_agent_with_relative_paths(dev_agent: DevAgent) -> None:
    cmdline = Path(f"/proc/{dev_agent.pid}/cmdline").read_bytes().split(b"\0")[:-1]
    args = [a.decode() for a in cmdline]
    assert Path(args[0]).name == "bolt-agent" and args[1] == "run", args
    opts = dict(zip(args[2::2], args[3::2]))
    assert opts == {
        "--config": "examples/dev-agent.toml",
        "--listen": dev_agent.addr,
        "--tls-dir": f"{dev_agent.dev_rel}/certs",
        "--packs-dir": "examples/packs",
        "--data-dir": f"{dev_agent.dev_rel}/data",
    }, args
    assert os.readlink(f"/proc/{dev_agent.pid}/cwd") == str(REPO.resolve())


def test_the_readme_grpcurl_commands(dev_agent: DevAgent) -> None:
    variables, commands = readme_grpcurl_block()
    if NO_GRPCURL:
        pytest.skip(NO_GRPCURL)
    variables = [f"G={shlex.quote(GRPCURL)}" if v.startswith("G=") else substitute(v, dev_agent) for v in variables]
    s = GrpcurlSession(dev_agent, variables, "README grpcurl")
    for line in commands:
        s.run(substitute(line, dev_agent))
    s.check_started()


def test_the_commands_make_run_prints(dev_agent: DevAgent) -> None:
    printed = dev_agent.printed_commands()
    assert len(printed) >= 8, printed
    dev = str(dev_agent.dev)
    for ln in printed:
        # how-to-call.sh names this agent's certificates and address, not the defaults.
        assert f"-cacert {dev}/certs/ca.crt -cert {dev}/certs/client.crt -key {dev}/certs/client.key" in ln, ln
        assert f" {dev_agent.addr} " in ln, ln
        assert README_ADDR not in ln or dev_agent.addr == README_ADDR, ln
    if NO_GRPCURL:
        pytest.skip(NO_GRPCURL)
    assert all(ln.startswith(GRPCURL + " ") for ln in printed), printed
    s = GrpcurlSession(dev_agent, [], "make run's commands")
    for line in printed:
        s.run(line)
    s.check_started()


def test_the_readme_bolt_cli(dev_agent: DevAgent) -> None:
    lines = readme_bolt_block()
    bolt = Path(sys.executable).parent / "bolt"
    assert bolt.exists(), f"no `bolt` next to {sys.executable}: `make venv` installs clients/python into .venv"
    env = {**os.environ, "PATH": f"{bolt.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for k in ("BOLT_CA", "BOLT_CERT", "BOLT_KEY"):
        env.pop(k, None)
    client = client_of(dev_agent.client)
    variables: list[str] = []
    ran: list[str] = []
    execs: list[str] = []
    for line in lines:
        if line.startswith("pip install "):
            continue  # the test's venv has it (make venv)
        line = substitute(line, dev_agent)
        if is_assignment(line):
            variables.append(line)
            continue
        argv = shlex.split(line)
        assert argv[0] == "bolt", f"README Clients: a command this test does not know: {line!r}"
        assert any(f"BOLT_CA={dev_agent.dev_rel}/certs/ca.crt" in v for v in variables), variables
        r = run_sh(variables, line, env=env)
        ran.append(argv[1])
        if argv[1] == "exec":
            assert "--follow" in argv, line
            pack, action = argv[3].split("/", 1)
            args = dict(a.split("=", 1) for flag, a in zip(argv, argv[1:]) if flag in ("-a", "--arg"))
            m = re.search(rf"started {re.escape(argv[3])} as (\S+)", r.stderr)
            assert m, f"{line}: {r.stderr}"
            eid = m.group(1)
            assert f"{eid} SUCCEEDED exit code 0" in r.stderr, f"{line}: {r.stderr}"
            check_output(pack, action, args, r.stdout, r.stderr, f"README Clients: {line}")
            assert client.get_execution(eid).state is State.SUCCEEDED
            execs.append(eid)
        elif argv[1] == "history":
            for eid in execs:
                row = next((ln for ln in r.stdout.splitlines() if ln.startswith(eid)), None)
                assert row and "demo/progress" in row and "SUCCEEDED" in row, f"{line}: {eid} missing:\n{r.stdout}"
        else:
            pytest.fail(f"README Clients: `bolt {argv[1]}` is new to this test: teach test_the_readme_bolt_cli()")
    assert ran[:2] == ["exec", "history"], ran


PYTHON_README = REPO / "clients" / "python" / "README.md"


def test_the_python_client_readme_example(dev_agent: DevAgent) -> None:
    """clients/python/README.md's first example, as written, against make run's agent."""
    text_ = PYTHON_README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text_, flags=re.S)
    first = next((b for b in blocks if "BoltClient(" in b and README_ADDR in b), None)
    if first is None:
        pytest.fail(f"{PYTHON_README}: no ```python block with BoltClient({README_ADDR!r}, ...) any more")
    code = substitute(first, dev_agent)
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, f"the Python README's example failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    assert "demo/progress True ['seconds', 'label']" in r.stdout, r.stdout
    assert "largest folders under /tmp (KiB):" in r.stdout and "task: 2/30 (6%)" in r.stdout, r.stdout
    assert "SERVING" in r.stdout.splitlines()[-1], r.stdout


def test_stopping_make_runs_agent_leaves_no_process(dev_agent: DevAgent) -> None:
    """Last of the make-run tests: every action has ended, so SIGTERM (Ctrl-C)
    must leave nothing behind: no spawner, no supervisor, no action."""
    dev_agent.seen |= dev_agent.processes()
    assert dev_agent.seen, "no process of make run's agent seen"
    code, left = dev_agent.stop()
    details = {}
    for pid, _start in left:
        try:
            details[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            pass  # ended meanwhile
    assert not details, f"left running after the agent stopped: {details}"
    assert code == 0, f"the agent exited with {code}:\n{dev_agent.output()}"


# ------------------------------------------- paths users type, on the binary


class DirectAgent:
    """`bolt-agent run` with the paths given as a user would type them."""

    def __init__(self, cwd: Path, certs: Path, packs_arg: str, data_arg: str, tls_arg: str | None = None) -> None:
        self.cwd, self.certs = cwd, certs
        self.data = cwd / data_arg  # as the agent should understand it
        self.addr = f"127.0.0.1:{free_port()}"
        self.log_path = cwd.parent / f"agent-{cwd.name}.log"
        self.cmd = [str(agent_bin()), "run", "--listen", self.addr, "--tls-dir", tls_arg or str(certs),
                    "--packs-dir", packs_arg, "--data-dir", data_arg]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.cmd, cwd=cwd, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         env={**os.environ, "BOLT_METRICS_LISTEN": "127.0.0.1:0"})
        addr_file = self.data / "agent.addr"
        deadline = time.monotonic() + 20
        while not (addr_file.exists() and addr_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"{self.cmd} (cwd {cwd}) did not serve:\n{self.log()}")
            time.sleep(0.05)
        self.client = SimpleNamespace(ca=certs / "ca.crt", client_cert=certs / "client.crt",
                                      client_key=certs / "client.key", port=int(self.addr.rsplit(":", 1)[1]))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-10000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def run_progress(self) -> Execution:
        with client_of(self.client) as client:
            eid = client.execute("demo", "progress", {"seconds": 1}).execution_id
            chunks, end = follow(client, eid, timeout=30)
        assert end is not None
        e = end.execution
        assert e.state is State.SUCCEEDED, (
            f"{self.cmd} (cwd {self.cwd}): {e.state}: {e.error!r}; output {text(chunks, None)!r}\n{self.log()}")
        assert text(chunks) == "task: 1/1 (100%)\n", text(chunks, None)
        assert "task: done" in text(chunks, Stream.STDERR), text(chunks, None)
        assert (self.data / "executions" / eid).is_dir(), f"no {self.data}/executions/{eid}"
        return e


@pytest.fixture
def direct(tmp_path: Path) -> Iterator[Any]:
    agents: list[DirectAgent] = []
    certs = make_certs(tmp_path / "certs")

    def start(cwd: Path, packs_arg: str, data_arg: str, tls_arg: str | None = None) -> DirectAgent:
        cwd.mkdir(parents=True, exist_ok=True)
        agents.append(DirectAgent(cwd, certs, packs_arg, data_arg, tls_arg))
        return agents[-1]

    yield start
    for a in agents:
        a.stop()


def test_relative_folders_from_another_working_folder(direct: Any, tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(EXAMPLE_PACKS, work / "packs", symlinks=True)
    shutil.copytree(tmp_path / "certs", work / "tls")
    a = direct(work, "packs", "data", tls_arg="tls")
    a.run_progress()
    assert (work / "data" / "agent.addr").exists()


def test_a_data_folder_with_a_space(direct: Any, tmp_path: Path) -> None:
    a = direct(tmp_path / "cwd", str(EXAMPLE_PACKS), str(tmp_path / "my data"))
    a.run_progress()


def test_a_symlinked_data_folder(direct: Any, tmp_path: Path) -> None:
    real = tmp_path / "real-data"
    real.mkdir()
    (tmp_path / "data").symlink_to(real)
    a = direct(tmp_path / "cwd", str(EXAMPLE_PACKS), str(tmp_path / "data"))
    e = a.run_progress()
    assert (real / "executions" / e.execution_id).is_dir()


def test_a_packs_folder_with_a_trailing_slash(direct: Any, tmp_path: Path) -> None:
    packs = tmp_path / "packs"
    shutil.copytree(EXAMPLE_PACKS, packs, symlinks=True)
    a = direct(tmp_path / "cwd", f"{packs}/", str(tmp_path / "data"))
    a.run_progress()
