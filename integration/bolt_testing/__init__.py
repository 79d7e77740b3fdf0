"""Test harness shared by the integration suite and the client test suites.

An :class:`Agent` owns one real ``bolt-agent`` process, its certificates, its
packs and its data folder. Nothing here is mocked: the agent is the binary that
``cargo build`` produced (``BOLT_AGENT_BIN`` overrides the path).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TEST_PACKS = REPO / "integration" / "packs"
EXAMPLE_PACKS = REPO / "examples" / "packs"

__all__ = ["REPO", "TEST_PACKS", "EXAMPLE_PACKS", "Agent", "agent_bin", "make_certs"]


def agent_bin() -> Path:
    """Path of the bolt-agent binary under test."""
    env = os.environ.get("BOLT_AGENT_BIN")
    if env:
        return Path(env)
    for profile in ("debug", "release"):
        p = REPO / "target" / profile / "bolt-agent"
        if p.exists():
            return p
    raise RuntimeError("bolt-agent is not built: run `cargo build` or set BOLT_AGENT_BIN")


def make_certs(directory: Path, *sans: str) -> Path:
    """Create a dev CA, agent and client certificates with `bolt-agent certs init`."""
    cmd = [str(agent_bin()), "certs", "init", "--dir", str(directory)]
    for san in sans:
        cmd += ["--san", san]
    subprocess.run(cmd, check=True, capture_output=True)
    return directory


def _accepts(address: str) -> bool:
    import socket

    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=0.2):
            return True
    except OSError:
        return False


class Agent:
    """One real agent process on a loopback port chosen by the kernel.

    The folder layout under ``root``: ``certs/`` (from ``certs init``),
    ``packs/`` (copies of the packs asked for), ``data/`` (the data folder) and
    ``agent.log`` (its stderr). The certificates survive :meth:`restart`, so
    one client channel can be used across restarts once it reconnects.
    """

    def __init__(
        self,
        root: Path | None = None,
        *,
        packs: list[Path] | None = None,
        config: str = "",
        certs: Path | None = None,
        env: dict[str, str] | None = None,
        binary: Path | None = None,
    ) -> None:
        self.root = Path(root or tempfile.mkdtemp(prefix="bolt-agent-"))
        self.certs = certs or make_certs(self.root / "certs")
        self.packs_dir = self.root / "packs"
        self.data_dir = self.root / "data"
        self.config_path = self.root / "agent.toml"
        self.log_path = self.root / "agent.log"
        self.packs_dir.mkdir(parents=True, exist_ok=True)
        for pack in packs if packs is not None else [TEST_PACKS / "bolt-test"]:
            shutil.copytree(pack, self.packs_dir / pack.name, symlinks=True)
        self.config_path.write_text(config)
        # Extra environment variables of the agent process (e.g. AWS credentials).
        self.env = dict(env or {})
        # The bolt-agent binary this agent runs (default: agent_bin()); may be
        # changed between stop() and start(), e.g. to upgrade to another build.
        self.binary = Path(binary) if binary else None
        # Descriptors the agent inherits (to check that actions do not).
        self.pass_fds: tuple[int, ...] = ()
        self.proc: subprocess.Popen[bytes] | None = None
        self.address = ""
        self.port = 0

    # --- process control -------------------------------------------------

    def start(self, listen: str = "127.0.0.1:0", timeout: float = 20.0) -> "Agent":
        """Starts the agent and waits until it serves: until it writes
        data/agent.addr, or, with a fixed port in `listen`, until the port
        accepts (a full data disk leaves no room for the address file)."""
        addr_file = self.data_dir / "agent.addr"
        if addr_file.exists():
            addr_file.unlink()
        fixed = int(listen.rsplit(":", 1)[1])
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                str(self.binary or agent_bin()),
                "run",
                "--config", str(self.config_path),
                "--listen", listen,
                "--tls-dir", str(self.certs),
                "--packs-dir", str(self.packs_dir),
                "--data-dir", str(self.data_dir),
            ],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            pass_fds=self.pass_fds,
            # Each agent's metrics on a port of its own unless told otherwise.
            env={"BOLT_METRICS_LISTEN": "127.0.0.1:0", **os.environ, **(self.env or {})},
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode}:\n{self.log()}")
            if addr_file.exists():
                text = addr_file.read_text().strip()
                if text:
                    self.address = text
                    self.port = int(text.rsplit(":", 1)[1])
                    return self
            if fixed and _accepts(listen):
                self.address, self.port = listen, fixed
                return self
            time.sleep(0.02)
        raise RuntimeError(f"agent did not start within {timeout}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Signal the agent and wait for it; returns its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    @property
    def metrics_url(self) -> str:
        """URL of the agent's Prometheus endpoint (from data/metrics.addr)."""
        return f"http://{(self.data_dir / 'metrics.addr').read_text().strip()}/metrics"

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self, listen: str | None = None) -> "Agent":
        self.stop()
        return self.start(listen or f"127.0.0.1:{self.port}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawners(self) -> list[int]:
        """Pids of the agent's live children running `bolt-agent supervisor-spawner`."""
        if self.proc is None:
            return []
        out = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                stat = (d / "stat").read_text()
                cmdline = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue  # gone meanwhile
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            if ppid == self.proc.pid and b"supervisor-spawner" in cmdline:
                out.append(int(d.name))
        return out

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except FileNotFoundError:
            return ""

    # --- client material ---------------------------------------------------

    @property
    def ca(self) -> Path:
        return self.certs / "ca.crt"

    @property
    def client_cert(self) -> Path:
        return self.certs / "client.crt"

    @property
    def client_key(self) -> Path:
        return self.certs / "client.key"

    def __enter__(self) -> "Agent":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
