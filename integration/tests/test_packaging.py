"""Packaging: the systemd unit (systemd-analyze verify, the choices it must
keep), the Debian package (contents, an install into a scratch root with its
maintainer scripts, the installed binary and default config), and the
Type=notify protocol (READY=1 once the port accepts, STOPPING=1 on SIGTERM).

The .deb is built from the binary under test (the debug build) with cargo-deb's
--no-build, so no release build is needed. cargo-deb comes from
`make cargo-deb` (pinned, into the user's cache); where it cannot be had, or
systemd-analyze / dpkg are missing, the tests concerned are skipped with the
reason printed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import pytest

from bolt_testing import EXAMPLE_PACKS, REPO, agent_bin

UNIT = REPO / "packaging" / "bolt-agent.service"
CONFIG = REPO / "packaging" / "agent.toml"

# Sandboxing that the actions (root remediation scripts, descendants of the
# agent) would inherit: the unit must set none of them.
RESTRICTING = {
    "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateNetwork", "PrivateUsers",
    "NoNewPrivileges", "CapabilityBoundingSet", "AmbientCapabilities", "SystemCallFilter",
    "SystemCallArchitectures", "RestrictNamespaces", "RestrictAddressFamilies", "RestrictSUIDSGID",
    "RestrictRealtime", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
    "ProtectControlGroups", "ProtectClock", "ProtectHostname", "ProtectProc", "ProcSubset",
    "MemoryDenyWriteExecute", "LockPersonality", "ReadOnlyPaths", "InaccessiblePaths", "DynamicUser",
    "OOMScoreAdjust", "DevicePolicy", "IPAddressDeny", "UMask",
}


_config: pytest.Config | None = None


@pytest.fixture(autouse=True, scope="module")
def _remember_config(request: pytest.FixtureRequest) -> None:
    global _config
    _config = request.config


def _skip(reason: str) -> None:
    """Skips with the reason printed even under -q (pytest shows skip reasons
    only with -rs)."""
    reporter = _config.pluginmanager.get_plugin("terminalreporter") if _config else None
    capture = _config.pluginmanager.get_plugin("capturemanager") if _config else None
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nSKIPPED (packaging): {reason}", yellow=True)
    else:
        print(f"\nSKIPPED (packaging): {reason}", file=sys.stderr)
    pytest.skip(reason)


def _run(cmd: list[str], timeout: float = 300, cwd: Path | None = None,
         env: dict[str, str] | None = None) -> tuple[int, str]:
    """Runs cmd; returns (exit code, stdout+stderr). The exit code is taken by
    a shell around it: conftest's subreaper thread reaps any child of this
    process, and a reaped child looks to subprocess like one that exited 0."""
    rc_file = tempfile.NamedTemporaryFile(prefix="bolt-rc-", delete=False)
    rc_file.close()
    try:
        p = subprocess.run(
            ["sh", "-c", '"$@"; echo $? > "$BOLT_RC_FILE"', "sh", *cmd],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, cwd=cwd,
            env={**(env if env is not None else os.environ), "BOLT_RC_FILE": rc_file.name},
        )
        text = Path(rc_file.name).read_text().strip()
        return (int(text) if text else 255), p.stdout
    finally:
        os.unlink(rc_file.name)


def _ok(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    rc, out = _run(cmd, cwd=cwd, env=env)
    assert rc == 0, f"{' '.join(cmd)} exited {rc}:\n{out}"
    return out


def _service_directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


def _verify(unit: Path) -> None:
    """systemd-analyze verify must pass and say nothing about the unit:
    unknown keys and out-of-range values are only warnings (exit 0)."""
    rc, out = _run(["systemd-analyze", "verify", str(unit)], timeout=60)
    assert rc == 0, f"systemd-analyze verify {unit} exited {rc}:\n{out}"
    noise = [line for line in out.splitlines() if unit.name in line or "ignoring" in line.lower()]
    assert not noise, f"systemd-analyze verify warns about {unit.name}:\n{out}"


def _with_exec_start(unit_text: str, binary: Path) -> str:
    new, n = re.subn(r"(?m)^(Exec(?:Start|Reload))=/usr/bin/bolt-agent ", rf"\1={binary} ", unit_text)
    assert n == 2, "ExecStart and ExecReload must run /usr/bin/bolt-agent"
    return new


# --- the unit -----------------------------------------------------------------


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    if not shutil.which("systemd-analyze"):
        _skip("systemd-analyze is not installed")
    # verify checks that ExecStart's binary exists and is executable; here
    # /usr/bin/bolt-agent is not installed, so verify the same unit pointing at
    # the binary under test (the package test verifies the installed one too).
    copy = tmp_path / "bolt-agent.service"
    copy.write_text(_with_exec_start(UNIT.read_text(), agent_bin()))
    _verify(copy)
    # The check is not blind: a typo in a key is caught even though verify
    # exits 0 for it.
    typo = tmp_path / "typo" / "bolt-agent.service"
    typo.parent.mkdir()
    typo.write_text(re.sub(r"(?m)^Nice=", "Nicce=", copy.read_text()))
    with pytest.raises(AssertionError, match="warns"):
        _verify(typo)


def test_unit_keeps_actions_alive_and_unrestricted() -> None:
    d = _service_directives(UNIT.read_text())
    assert d["Service.Type"] == ["notify"]
    assert d["Service.NotifyAccess"] == ["main"]
    assert d["Service.ExecStart"] == ["/usr/bin/bolt-agent run --config /etc/bolt/agent.toml"]
    # A synchronous reload that fails when the new config does not load, and a watchdog.
    assert d["Service.ExecReload"] == ["/usr/bin/bolt-agent reload --config /etc/bolt/agent.toml --pid $MAINPID"]
    assert d["Service.WatchdogSec"] == ["30s"]
    assert d["Service.KillMode"] == ["process"], "a restart must not kill supervisors and actions"
    assert d["Service.Restart"] == ["on-failure"]
    assert d["Service.Delegate"] == ["yes"]
    nice = int(d["Service.Nice"][0])
    assert 0 < nice <= 19
    assert re.fullmatch(r"\d+[KMGT]?", d["Service.MemoryMax"][0]), d["Service.MemoryMax"]
    # An action OOM-killed by its own cap is an ordinary outcome, not a
    # reason to stop the agent; per-action pids caps, not one for the tree.
    assert d["Service.OOMPolicy"] == ["continue"]
    assert d["Service.TasksMax"] == ["infinity"]
    assert d["Install.WantedBy"] == ["multi-user.target"]
    restricting = sorted(k for k in d if k.split(".", 1)[1] in RESTRICTING)
    assert not restricting, f"these would restrict the actions: {restricting}"


def test_packaged_config_is_the_reference_with_comments() -> None:
    packaged = tomllib.loads(CONFIG.read_text())
    reference = tomllib.loads((REPO / "examples" / "agent.toml").read_text())
    assert packaged == reference, "packaging/agent.toml and examples/agent.toml disagree"
    assert packaged["tls_dir"] == "/etc/bolt/tls"
    assert packaged["packs_dir"] == "/var/lib/bolt/packs"
    assert packaged["data_dir"] == "/var/lib/bolt/data"
    assert CONFIG.read_text().count("\n#") > 10, "the installed config explains itself"


# --- the Debian package -------------------------------------------------------


def _cargo_deb() -> str:
    """cargo-deb: $CARGO_DEB (make test-integration sets it), else the one
    `make cargo-deb` installs (once per machine, into the user's cache)."""
    env = os.environ.get("CARGO_DEB")
    if env and Path(env).exists():
        return env
    if shutil.which("cargo-deb"):
        return shutil.which("cargo-deb")  # type: ignore[return-value]
    if not shutil.which("cargo") or not shutil.which("make"):
        _skip("cargo-deb is not installed and cargo or make is missing to install it")
    started = time.monotonic()
    rc, out = _run(["make", "-s", "-C", str(REPO), "cargo-deb"], timeout=900)
    print(f"\ninstalled cargo-deb in {time.monotonic() - started:.0f} s", file=sys.stderr)
    _, path = _run(["make", "-s", "--no-print-directory", "-C", str(REPO), "print-cargo-deb"], timeout=60)
    found = path.strip().splitlines()[-1] if path.strip() else ""
    if rc != 0 or not Path(found).exists():
        _skip(f"cargo-deb could not be installed (`make cargo-deb` exited {rc}):\n{out[-2000:]}")
    return found


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for tool in ("dpkg-deb", "dpkg"):
        if not shutil.which(tool):
            _skip(f"{tool} is not installed")
    cargo_deb = _cargo_deb()
    work = tmp_path_factory.mktemp("deb")
    # cargo-deb packages target/release/bolt-agent of the target folder it is
    # given: lay the binary under test there instead of building a release.
    release = work / "target" / "release"
    release.mkdir(parents=True)
    try:
        os.link(agent_bin(), release / "bolt-agent")
    except OSError:
        shutil.copy2(agent_bin(), release / "bolt-agent")
    out_dir = work / "out"
    _ok(
        [cargo_deb, "-p", "bolt-agent", "--no-build", "--strip", "--fast", "--output", f"{out_dir}/"],
        cwd=REPO, env={**os.environ, "CARGO_TARGET_DIR": str(work / "target")},
    )
    debs = list(out_dir.glob("bolt-agent_*.deb"))
    assert len(debs) == 1, debs
    return debs[0]


def _version() -> str:
    return _ok([str(agent_bin()), "--version"]).split()[-1]


def test_deb_contents(deb: Path) -> None:
    listing = _ok(["dpkg-deb", "-c", str(deb)])
    entries = {}
    for line in listing.splitlines():
        parts = line.split()
        entries[parts[-1].removeprefix(".")] = parts[0]
    assert entries["/usr/bin/bolt-agent"] == "-rwxr-xr-x"
    assert entries["/lib/systemd/system/bolt-agent.service"] == "-rw-r--r--"
    assert entries["/etc/bolt/agent.toml"] == "-rw-r--r--"
    assert "/usr/share/doc/bolt-agent/README.md" in entries
    packs = sorted(p for p in EXAMPLE_PACKS.rglob("*") if p.is_file())
    assert packs
    for p in packs:
        path = "/usr/share/bolt/examples/packs/" + str(p.relative_to(EXAMPLE_PACKS))
        assert path in entries, f"{path} is missing from the package"
        want_exec = bool(p.stat().st_mode & stat.S_IXUSR)
        assert (entries[path][3] == "x") == want_exec, f"{path}: {entries[path]}"

    info = _ok(["dpkg-deb", "-I", str(deb)])
    assert re.search(r"(?m)^ Package: bolt-agent$", info)
    assert re.search(rf"(?m)^ Version: {re.escape(_version())}-\d+$", info), info
    assert re.search(r"(?m)^ Depends: .*libc6", info), info
    assert _ok(["dpkg-deb", "-I", str(deb), "conffiles"]).split() == ["/etc/bolt/agent.toml"]
    for script in ("postinst", "prerm", "postrm"):
        assert _run(["dpkg-deb", "-I", str(deb), script])[0] == 0, f"no {script}"


@pytest.fixture(scope="module")
def installed(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package installed into a scratch root with dpkg --root, its
    maintainer scripts run outside a chroot with DPKG_ROOT set (as an image
    builder does; the scratch root has no shell). Dependencies (libc6) are
    the host's."""
    root = tmp_path_factory.mktemp("root")
    admin = root / "var" / "lib" / "dpkg"
    (admin / "updates").mkdir(parents=True)
    (admin / "info").mkdir()
    (admin / "status").touch()
    (admin / "available").touch()
    _ok(["dpkg", f"--root={root}", "--force-script-chrootless", "--force-depends", "--force-not-root",
         "-i", str(deb)])
    return root


def _status(root: Path) -> str:
    rc, out = _run(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-s", "bolt-agent"])
    return out if rc == 0 else ""


def test_deb_installs_into_a_scratch_root(installed: Path, tmp_path: Path) -> None:
    root = installed
    status = _status(root)
    assert "Status: install ok installed" in status, status
    assert re.search(r"(?m)^ /etc/bolt/agent\.toml [0-9a-f]{32}$", status), "agent.toml is a conffile"
    assert (root / "etc/bolt/agent.toml").read_text() == CONFIG.read_text()
    assert (root / "lib/systemd/system/bolt-agent.service").read_text() == UNIT.read_text()
    # postinst made the state and certificate folders, root-only where secret.
    assert stat.S_IMODE((root / "var/lib/bolt/data").stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "etc/bolt/tls").stat().st_mode) == 0o700
    assert (root / "var/lib/bolt/packs").is_dir()
    if shutil.which("systemctl"):
        wants = root / "etc/systemd/system/multi-user.target.wants/bolt-agent.service"
        assert wants.is_symlink(), "postinst enables the unit in the scratch root"

    binary = root / "usr/bin/bolt-agent"
    assert _ok([str(binary), "--version"]).strip() == f"bolt-agent {_version()}"
    _ok([str(binary), "certs", "init", "--dir", str(root / "etc/bolt/tls")])
    for name in ("ca.crt", "agent.crt", "agent.key", "client.crt", "client.key"):
        assert (root / "etc/bolt/tls" / name).is_file(), name
    assert stat.S_IMODE((root / "etc/bolt/tls/agent.key").stat().st_mode) == 0o600

    # The installed unit, pointed at the installed binary, verifies too.
    if shutil.which("systemd-analyze"):
        unit = tmp_path / "bolt-agent.service"
        unit.write_text(_with_exec_start((root / "lib/systemd/system/bolt-agent.service").read_text(), binary))
        _verify(unit)


def _notify_socket() -> tuple[socket.socket, str]:
    # AF_UNIX paths are short (108 bytes): not under pytest's tmp_path.
    path = os.path.join(tempfile.mkdtemp(prefix="bolt-n-", dir="/tmp"), "notify")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    return s, path


def _recv_states(s: socket.socket, timeout: float) -> list[str]:
    s.settimeout(timeout)
    try:
        data = s.recv(4096)
    except TimeoutError:
        return []
    return [line for line in data.decode().splitlines() if line]


def test_installed_agent_notifies_readiness_and_serves_the_example_packs(installed: Path, tmp_path: Path) -> None:
    """The packaged binary with the packaged config, as systemd runs it with
    Type=notify: READY=1 only once the port accepts connections, STOPPING=1
    on SIGTERM. It serves the packaged example packs."""
    import grpc
    from bolt.v1 import bolt_pb2 as pb
    from bolt.v1 import bolt_pb2_grpc

    root = installed
    tls = root / "etc/bolt/tls"
    if not (tls / "agent.key").exists():
        _ok([str(root / "usr/bin/bolt-agent"), "certs", "init", "--dir", str(tls)])
    data = tmp_path / "data"
    sock, path = _notify_socket()
    log = open(tmp_path / "agent.log", "wb")
    proc = subprocess.Popen(
        [str(root / "usr/bin/bolt-agent"), "run", "--config", str(root / "etc/bolt/agent.toml"),
         "--listen", "127.0.0.1:0", "--tls-dir", str(tls),
         "--packs-dir", str(root / "usr/share/bolt/examples/packs"), "--data-dir", str(data)],
        env={**os.environ, "NOTIFY_SOCKET": path}, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
    )
    log.close()
    try:
        states: list[str] = []
        deadline = time.monotonic() + 30
        while "READY=1" not in states and time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "agent.log").read_text()
            states += _recv_states(sock, 0.5)
        assert "READY=1" in states, f"no READY=1 within 30 s:\n{(tmp_path / 'agent.log').read_text()}"
        # Right when READY=1 arrives, the listener is up: no polling here.
        addr = (data / "agent.addr").read_text().strip()
        host, port = addr.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=2):
            pass
        assert "STOPPING=1" not in states

        creds = grpc.ssl_channel_credentials(
            root_certificates=(tls / "ca.crt").read_bytes(),
            private_key=(tls / "client.key").read_bytes(),
            certificate_chain=(tls / "client.crt").read_bytes(),
        )
        with grpc.secure_channel(f"127.0.0.1:{port}", creds,
                                 options=[("grpc.ssl_target_name_override", "localhost")]) as ch:
            reply = bolt_pb2_grpc.BoltStub(ch).ListActions(pb.ListActionsRequest(), timeout=10)
        served = {a.pack for a in reply.actions}
        assert served == {p.name for p in EXAMPLE_PACKS.iterdir() if (p / "pack.toml").exists()}, reply

        proc.send_signal(signal.SIGTERM)
        later: list[str] = []
        deadline = time.monotonic() + 15
        while "STOPPING=1" not in later and time.monotonic() < deadline:
            later += _recv_states(sock, 0.5)
        assert "STOPPING=1" in later, f"no STOPPING=1 after SIGTERM:\n{(tmp_path / 'agent.log').read_text()}"
        proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def test_deb_removes_and_purges_cleanly(installed: Path) -> None:
    """Runs last on the scratch root: remove keeps the edited conffile and
    state, purge drops the conffile; the unit is disabled."""
    root = installed
    _ok(["dpkg", f"--root={root}", "--force-script-chrootless", "--force-not-root", "-r", "bolt-agent"])
    assert not (root / "usr/bin/bolt-agent").exists()
    assert not (root / "lib/systemd/system/bolt-agent.service").exists()
    assert (root / "etc/bolt/agent.toml").exists(), "remove keeps the conffile"
    assert not (root / "etc/systemd/system/multi-user.target.wants/bolt-agent.service").exists()
    _ok(["dpkg", f"--root={root}", "--force-script-chrootless", "--force-not-root", "--purge", "bolt-agent"])
    assert not (root / "etc/bolt/agent.toml").exists()
    assert (root / "var/lib/bolt/data").is_dir(), "purge keeps the execution history"
    assert "install ok installed" not in _status(root)
