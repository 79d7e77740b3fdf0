"""Hardening, second round: each test reproduces, against a real agent, a
defect found by probing from outside, and holds its fix.

- a `read` rule reads only its packs (GetExecution, ListExecutions, StreamOutput);
- an empty or missing `history.redb` never deletes an execution's folder: the
  executions are adopted back from their `spec.json`, a running one included.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from bolt_client import ServingStatus, State, Stream, UnavailableError
from bolt_testing import EXAMPLE_PACKS, TEST_PACKS, Agent, agent_bin
from util import client_for, code_of, execute, follow, get, healthy, pid_file, text, wait_state, wait_until

# --- a read rule reads only its packs -------------------------------------------------

READ_RULES = """
[[authz.rules]]
identities = ["bolt-client"]
allow = ["execute", "read", "kill"]

[[authz.rules]]
identities = ["reader"]
allow = ["read"]
packs = ["probe"]
"""


@pytest.fixture
def two_packs(tmp_path: Path) -> Path:
    """bolt-test and a copy of it named `probe`."""
    packs = tmp_path / "src"
    shutil.copytree(TEST_PACKS / "bolt-test", packs / "bolt-test")
    shutil.copytree(TEST_PACKS / "bolt-test", packs / "probe")
    manifest = packs / "probe" / "pack.toml"
    manifest.write_text(manifest.read_text().replace('name = "bolt-test"', 'name = "probe"', 1))
    return packs


def test_a_read_rule_reads_only_its_packs(tmp_path: Path, two_packs: Path) -> None:
    with Agent(tmp_path / "a", packs=[two_packs / "bolt-test", two_packs / "probe"], config=READ_RULES) as a:
        subprocess.run([str(agent_bin()), "certs", "issue", "--dir", str(a.certs), "--name", "reader"], check=True, capture_output=True)
        owner = client_for(a)
        reader = client_for(a, a.certs / "reader.crt", a.certs / "reader.key")

        secret = execute(owner, "echo", msg="secret-output")
        wait_state(owner, secret, timeout=20)
        probe = owner.execute("probe", "echo", {"msg": "probe-output"}).execution_id
        wait_state(owner, probe, timeout=20)

        # Its own pack: every read works.
        assert get(reader, probe).state is State.SUCCEEDED
        chunks, end = follow(reader, probe)
        assert "probe-output" in text(chunks) and end is not None

        # Another pack: refused, naming the pack, and nothing of it leaks.
        code, details = code_of(lambda: get(reader, secret))
        assert code == grpc.StatusCode.PERMISSION_DENIED and "bolt-test" in details, details
        code, details = code_of(lambda: list(reader.stream_output(secret)))
        assert code == grpc.StatusCode.PERMISSION_DENIED and "bolt-test" in details, details
        code, details = code_of(lambda: reader.list_executions(pack="bolt-test"))
        assert code == grpc.StatusCode.PERMISSION_DENIED, details

        # Listing shows only what may be read, and pages stay full.
        for _ in range(3):
            wait_state(owner, owner.execute("probe", "noop").execution_id)
            wait_state(owner, execute(owner, "noop"))
        listed = reader.list_executions(page_size=50).executions
        assert {e.pack for e in listed} == {"probe"} and len(listed) == 4
        page = reader.list_executions(page_size=2)
        assert len(page.executions) == 2 and page.next_page_token
        rest = reader.list_executions(page_size=50, page_token=page.next_page_token)
        assert [e.pack for e in rest.executions] == ["probe", "probe"]

        # The owner still sees everything.
        assert {e.pack for e in owner.list_executions(page_size=50).executions} == {"probe", "bolt-test"}


# --- an empty history deletes nothing --------------------------------------------------


@pytest.mark.parametrize("damage", ["truncate", "remove"])
def test_an_empty_or_missing_history_adopts_every_execution_folder(tmp_path: Path, damage: str) -> None:
    a = Agent(tmp_path / "a").start()
    try:
        client = client_for(a)
        done = execute(client, "echo", msg="kept", key="before-damage")
        wait_state(client, done)
        failed = execute(client, "fail", code=3)
        wait_state(client, failed)
        running = execute(client, "sleep", ticks=8, interval="0.5")
        wait_state(client, running, {State.RUNNING})
        log = a.data_dir / "executions" / running / "output.log"
        wait_until(lambda: log.exists() and b"tick 1" in log.read_bytes(), 10, "a first tick")
        a.stop()

        history = a.data_dir / "history.redb"
        if damage == "truncate":
            history.write_bytes(b"")
        else:
            history.rename(a.data_dir / "history.redb.aside")
        folders = {p.name for p in (a.data_dir / "executions").iterdir()}
        assert {done, failed, running} <= folders

        a.start()
        client = client_for(a)
        assert {p.name for p in (a.data_dir / "executions").iterdir()} >= {done, failed, running}, "nothing was deleted"
        assert "adopted" in a.log()

        e = get(client, done)
        assert (e.state, e.pack, e.action, e.caller, e.args["msg"]) == (State.SUCCEEDED, "bolt-test", "echo", "bolt-client", "kept")
        chunks, _ = follow(client, done)
        assert "kept" in text(chunks)
        e = get(client, failed)
        assert (e.state, e.exit_code) == (State.FAILED, 3)

        # The running action was re-attached: it ends by itself, with all its output.
        e = wait_state(client, running, timeout=30)
        assert e.state is State.SUCCEEDED, e.error
        chunks, _ = follow(client, running)
        assert text(chunks).count("tick") == 8

        # The idempotency key is known again: a retry starts nothing new.
        again = execute(client, "echo", msg="kept", key="before-damage")
        assert again == done
        listed = {e.execution_id for e in client.list_executions(page_size=50).executions}
        assert listed == {done, failed, running}
    finally:
        a.stop()


# --- a supervisor's death ends its action ----------------------------------------------


def processes_of(eid: str) -> list[int]:
    """Pids whose environment names the execution."""
    needle = f"BOLT_EXECUTION_ID={eid}".encode()
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if needle in (d / "environ").read_bytes().split(b"\0"):
                    out.append(int(d.name))
            except OSError:
                continue
    return out


def test_kill9_of_a_supervisor_ends_what_is_left_of_its_action(make_agent) -> None:  # type: ignore[no-untyped-def]
    a = make_agent()
    client = client_for(a)
    eid = execute(client, "sleep", ticks=600, interval="0.1")
    wait_state(client, eid, {State.RUNNING})
    wait_until(lambda: processes_of(eid), 10, "the action's processes")
    sup = pid_file(a, eid, "supervisor.pid")
    os.kill(sup, signal.SIGKILL)
    e = wait_state(client, eid, timeout=20)
    assert e.state is State.LOST and "supervisor" in e.error
    wait_until(lambda: not processes_of(eid), 10, "no process of the action to be left")
    spec = json.loads((a.data_dir / "executions" / eid / "spec.json").read_text())
    cgroup = spec["caps"].get("cgroup")
    if cgroup:
        leftovers = [p for p in Path("/sys/fs/cgroup").rglob(cgroup.split("/")[-1]) if p.is_dir()]
        assert leftovers == [], leftovers
    assert client.kill(eid).already_ended


# --- revocation reaches open connections ------------------------------------------------


def test_revocation_closes_the_connections_a_certificate_opened(make_agent) -> None:  # type: ignore[no-untyped-def]
    a = make_agent(config='[limits]\ntls_reload_interval = "200ms"\n')
    subprocess.run([str(agent_bin()), "certs", "issue", "--dir", str(a.certs), "--name", "mallory"], check=True, capture_output=True)
    mallory = client_for(a, a.certs / "mallory.crt", a.certs / "mallory.key")
    other = client_for(a)
    assert mallory.health().status is ServingStatus.SERVING
    subprocess.run([str(agent_bin()), "certs", "revoke", "--dir", str(a.certs), "--name", "mallory"], check=True, capture_output=True)

    def refused() -> bool:
        try:
            mallory.health()
        except UnavailableError:
            return True
        return False

    wait_until(refused, 20, "the open channel of the revoked certificate to be closed")
    assert "no longer trusted" in a.log()
    assert other.health().status is ServingStatus.SERVING


# --- pack files ----------------------------------------------------------------------------


def pack_errors(client) -> str:  # type: ignore[no-untyped-def]
    return " | ".join(f"{e.source}: {e.error}" for e in client.agent_info().pack_errors)


RESCAN = '[packs]\nrescan_interval = "200ms"\n'


@pytest.mark.parametrize("how", ["world-writable entrypoint", "world-writable folder", "another user's file"])
def test_pack_files_others_can_write_are_refused(make_agent, how: str) -> None:  # type: ignore[no-untyped-def]
    a = make_agent(config=RESCAN)
    client = client_for(a)
    assert wait_state(client, execute(client, "noop")).state is State.SUCCEEDED
    pack = a.packs_dir / "bolt-test"
    if how == "world-writable entrypoint":
        (pack / "noop.sh").chmod(0o777)
    elif how == "world-writable folder":
        pack.chmod(0o777)
    else:
        os.chown(pack / "noop.sh", 65534, 65534)
    wait_until(lambda: "bolt-test" in pack_errors(client), 10, "the pack to be refused")
    errors = pack_errors(client)
    assert "refused" in errors and ("anyone" in errors or "owned by uid 65534" in errors), errors
    code, _ = code_of(lambda: execute(client, "noop"))
    assert code == grpc.StatusCode.NOT_FOUND
    health = client.health()
    assert any("bolt-test" in p for p in health.problems), health.problems


def test_a_fifo_manifest_wedges_nothing(make_agent) -> None:  # type: ignore[no-untyped-def]
    a = make_agent(config=RESCAN, packs=[TEST_PACKS / "bolt-test", EXAMPLE_PACKS / "demo"])
    client = client_for(a)
    manifest = a.packs_dir / "demo" / "pack.toml"
    manifest.unlink()
    os.mkfifo(manifest)
    wait_until(lambda: "not a regular file" in pack_errors(client), 10, "the FIFO to be refused")
    assert wait_state(client, execute(client, "noop")).state is State.SUCCEEDED, "other packs still serve"
    a.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "SIGHUP" in a.log(), 10, "the reload")
    assert client.health().status is ServingStatus.DEGRADED
    t0 = time.monotonic()
    assert a.stop() == 0
    assert time.monotonic() - t0 < 10


def test_a_symlinked_manifest_is_refused_and_never_quoted(make_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "secret"
    secret.write_text("TOPSECRET-FIRST-LINE = [\n")
    secret.chmod(0o600)
    a = make_agent(config=RESCAN, packs=[TEST_PACKS / "bolt-test", EXAMPLE_PACKS / "demo"])
    client = client_for(a)
    manifest = a.packs_dir / "demo" / "pack.toml"
    manifest.unlink()
    manifest.symlink_to(secret)
    wait_until(lambda: "demo" in pack_errors(client), 10, "the link to be refused")
    errors = pack_errors(client)
    assert "symbolic link" in errors and "TOPSECRET" not in errors, errors
    # A syntax error names the line and column, never the text.
    manifest.unlink()
    manifest.write_text('name = "demo"\nTOPSECRET-OTHER = [\n')
    wait_until(lambda: "line" in pack_errors(client), 10, "the syntax error")
    errors = pack_errors(client)
    assert "TOPSECRET" not in errors and "line 2" in errors, errors


def test_a_symlinked_pack_folder_is_reported(make_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = make_agent(config=RESCAN)
    client = client_for(a)
    shutil.copytree(EXAMPLE_PACKS / "demo", tmp_path / "elsewhere-demo")
    (a.packs_dir / "demo").symlink_to(tmp_path / "elsewhere-demo")
    wait_until(lambda: "symbolic link" in pack_errors(client), 10, "the link to be reported")
    assert "demo" not in {x.pack for x in client.list_actions()}


# --- what an action receives ------------------------------------------------------------------


def test_integers_reach_the_action_in_canonical_form(client) -> None:  # type: ignore[no-untyped-def]
    for given, passed in (("05", "5"), ("+7", "7"), ("010", "10")):
        eid = execute(client, "echo", msg="x", count=given)
        chunks, end = follow(client, eid)
        out = text(chunks)
        assert f"argv:--count={passed}\n" in out and f"env:BOLT_ARG_COUNT={passed}\n" in out, out
        assert get(client, eid).args["count"] == passed


def script_pack(root: Path, name: str, action: str, script: str) -> Path:
    """A pack folder `root/src/<name>` with one action running `script`."""
    pack = root / "src" / name
    pack.mkdir(parents=True)
    (pack / "pack.toml").write_text(f'name = "{name}"\n[[actions]]\nname = "{action}"\nentrypoint = "{action}.sh"\n')
    (pack / f"{action}.sh").write_text(script)
    (pack / f"{action}.sh").chmod(0o755)
    return pack


def test_actions_get_a_fixed_umask_and_no_inherited_descriptor(tmp_path: Path) -> None:
    pack = script_pack(tmp_path, "probe-env", "show", '#!/bin/sh\necho "umask $(umask)"\nls /proc/$$/fd | sort -n | tr "\\n" " "\n')
    opened = os.open(tmp_path / "leak", os.O_CREAT | os.O_RDWR)
    leak = os.dup2(opened, 77)  # a number no shell uses for itself
    os.close(opened)
    os.set_inheritable(leak, True)
    a = Agent(tmp_path / "a", packs=[pack])
    a.pass_fds = (leak,)
    old = os.umask(0)
    try:
        a.start()
    finally:
        os.umask(old)
    try:
        client = client_for(a)
        eid = client.execute("probe-env", "show").execution_id
        chunks, _ = follow(client, eid)
        out = text(chunks)
        assert "umask 0022" in out, out
        fds = out.splitlines()[1].split()
        assert fds[:3] == ["0", "1", "2"] and "77" not in fds, out
    finally:
        a.stop()
        os.close(leak)


# --- identities -----------------------------------------------------------------------------


# --- a retry of what never ran runs it ------------------------------------------------------------


def test_a_retry_runs_an_execution_the_agent_never_started(agent) -> None:  # type: ignore[no-untyped-def]
    client = client_for(agent)
    wait_state(client, execute(client, "noop"))  # the spawner is up
    spawners = agent.spawners()
    assert spawners
    for pid in spawners:
        os.kill(pid, signal.SIGSTOP)
    eid = execute(client, "echo", msg="once", key="crash-before-launch")
    agent.kill9()
    for pid in spawners:
        os.kill(pid, signal.SIGKILL)
    agent.start()
    client = client_for(agent)
    first = get(client, eid)
    assert first.state is State.FAILED and "did not run" in first.error, first
    retry = execute(client, "echo", msg="once", key="crash-before-launch")
    assert retry != eid
    e = wait_state(client, retry)
    assert e.state is State.SUCCEEDED
    assert execute(client, "echo", msg="once", key="crash-before-launch") == retry, "then the key names the run"


# --- info can be narrowed ---------------------------------------------------------------------


def test_info_is_everyone_s_until_narrowed(make_agent) -> None:  # type: ignore[no-untyped-def]
    rules = '[[authz.rules]]\nidentities = ["bolt-client"]\nallow = ["execute", "read"]\n'
    for narrowed in (False, True):
        config = ('[authz]\ninfo = ["monitor"]\n' if narrowed else "") + rules
        a = make_agent(config=config)
        for name in ("stranger", "monitor"):
            subprocess.run([str(agent_bin()), "certs", "issue", "--dir", str(a.certs), "--name", name], check=True, capture_output=True)
        stranger = client_for(a, a.certs / "stranger.crt", a.certs / "stranger.key")
        monitor = client_for(a, a.certs / "monitor.crt", a.certs / "monitor.key")
        calls = (
            lambda s: s.list_actions(),
            lambda s: s.agent_info(),
            lambda s: s.health(),
        )
        for call in calls:
            call(monitor)
            if narrowed:
                code, details = code_of(lambda: call(stranger))
                assert code == grpc.StatusCode.PERMISSION_DENIED and "info" in details, details
            else:
                call(stranger)
        a.stop()


# --- a server that drips ------------------------------------------------------------------------


class _Drip:
    """An S3-compatible endpoint that answers every GET with a correct
    header and then one byte of body every 0.2 s: a slow or hostile server."""

    def __init__(self) -> None:
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(64 * 1024))
                self.send_header("ETag", '"drip"')
                self.end_headers()
                try:
                    for _ in range(64 * 1024):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(0.2)
                except OSError:
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_dripping_index_is_given_up_within_the_request_timeout(make_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    drip = _Drip()
    try:
        key = tmp_path / "k"
        key.mkdir()
        subprocess.run([str(agent_bin()), "keys", "gen", "--out", str(key), "--name", "release"], check=True, capture_output=True)
        config = f"""
[instance]
stage = "test"
[sync]
enabled = true
bucket = "drip"
endpoint = "{drip.endpoint}"
path_style = true
interval = "60s"
request_timeout = "2s"
trusted_keys = ["{key / 'release.pub'}"]
"""
        a = make_agent(config=config, env={"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"})
        client = client_for(a)
        t0 = time.monotonic()
        s = wait_until(lambda: (lambda x: x if x.last_error else None)(client.agent_info().pack_sync), 30, "the sync to give up")
        assert "too slowly" in s.last_error, s.last_error
        assert time.monotonic() - t0 < 15
    finally:
        drip.close()


# --- the data folder ----------------------------------------------------------------------------


def test_a_loose_data_folder_is_tightened_and_a_planted_link_is_never_followed(tmp_path: Path) -> None:
    victim = tmp_path / "root-only"
    victim.write_text("precious\n")
    victim.chmod(0o600)
    a = Agent(tmp_path / "a")
    a.data_dir.mkdir(parents=True)
    a.data_dir.chmod(0o777)
    for name in (".agent.addr.tmp", ".metrics.addr.tmp", ".state.json.tmp"):
        (a.data_dir / name).symlink_to(victim)
    a.start()
    try:
        assert victim.read_text() == "precious\n"
        assert a.data_dir.stat().st_mode & 0o777 == 0o755, oct(a.data_dir.stat().st_mode)
        assert "tightened" in a.log()
        assert healthy(client_for(a))
    finally:
        a.stop()
    fresh = Agent(tmp_path / "b").start()
    try:
        assert fresh.data_dir.stat().st_mode & 0o777 == 0o711
    finally:
        fresh.stop()


# --- output on disk ---------------------------------------------------------------------------------

def test_one_byte_writes_stay_within_the_cap_on_disk(tmp_path: Path) -> None:
    pack = script_pack(tmp_path, "probe-drip", "bytes", '#!/bin/sh\ni=0\nwhile [ $i -lt 600 ]; do printf x; sleep 0.002; i=$((i+1)); done\n')
    with Agent(tmp_path / "a", packs=[pack], config='[exec]\noutput_max = "2KiB"\n') as a:
        client = client_for(a)
        eid = client.execute("probe-drip", "bytes").execution_id
        chunks, end = follow(client, eid, timeout=60)
        assert end is not None and end.execution.output_truncated and end.execution.stdout_bytes == 600
        notice = text(chunks, Stream.SYSTEM)
        on_disk = (a.data_dir / "executions" / eid / "output.log").stat().st_size
        # magic, the capped records, then the notice's record
        assert on_disk <= 8 + 2048 + 16 + len(notice.encode()), on_disk
        assert len(text(chunks)) < 2048


# --- seeking in a long output --------------------------------------------------------------------


def test_seeking_far_into_millions_of_tiny_records_stalls_nothing(tmp_path: Path) -> None:
    import struct
    import threading

    with Agent(tmp_path / "a") as a:
        client = client_for(a)
        eid = execute(client, "echo", msg="x")
        wait_state(client, eid)
        a.stop()
        # The output as a chatty action leaves it: two million one-byte records.
        n = 2_000_000
        record = struct.pack("<B3xIQ", 1, 1, 0) + b"z"
        (a.data_dir / "executions" / eid / "output.log").write_bytes(b"BOLTOUT1" + record * n)
        a.start()
        client = client_for(a)
        results: list[str] = []

        def far() -> None:
            chunks = list(client_for(a).stream_output(eid, offset=n - 3, timeout=60))
            results.append(text(chunks))

        threads = [threading.Thread(target=far) for _ in range(16)]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        assert healthy(client)
        health_took = time.monotonic() - t0
        for t in threads:
            t.join(60)
        assert results == ["zzz"] * 16, results[:2]
        assert health_took < 2, health_took
