"""Metrics: a real Prometheus server (Debian's package) scrapes an agent; after
a known mix of executions its HTTP API reports exactly those counts."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from bolt_client import ServingStatus, State
from bolt_testing import Agent
from util import client_for, execute, wait_state, wait_until

PROMETHEUS = os.environ.get("PROMETHEUS") or shutil.which("prometheus") or "/usr/bin/prometheus"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (loopback only)
        return r.read().decode()


class Prometheus:
    def __init__(self, root: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        root.mkdir(parents=True, exist_ok=True)
        cfg = root / "prometheus.yml"
        cfg.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"scrape_configs:\n  - job_name: bolt\n    static_configs:\n      - targets: ['{target}']\n"
        )
        self.log = open(root / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={cfg}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=self.log,
        )
        wait_until(self.ready, 30, "Prometheus to start")

    def ready(self) -> bool:
        try:
            return "Ready" in http_get(f"{self.url}/-/ready", 1)
        except OSError:
            return False

    def query(self, q: str) -> list[dict[str, Any]]:
        body = json.loads(http_get(f"{self.url}/api/v1/query?query={urllib.parse.quote(q)}"))
        assert body["status"] == "success", body
        return body["data"]["result"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Callable[[Agent], Prometheus]]:
    if not Path(PROMETHEUS).exists():
        pytest.skip(f"no Prometheus server at {PROMETHEUS} (make test installs Debian's prometheus)")
    started: list[Prometheus] = []

    def start(a: Agent) -> Prometheus:
        target = (a.data_dir / "metrics.addr").read_text().strip()
        p = Prometheus(tmp_path / f"prometheus{len(started)}", target)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def by_label(result: list[dict[str, Any]], label: str) -> dict[str, float]:
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in result}


def test_prometheus_scrapes_exactly_the_executions_that_ran(
    make_agent: Callable[..., Agent], prometheus_for: Callable[[Agent], Prometheus]
) -> None:
    a = make_agent(config='[exec]\nkill_grace = "1s"\n')
    prom = prometheus_for(a)
    s = client_for(a)
    ids = [execute(s, "noop") for _ in range(3)]
    ids += [execute(s, "fail", code=3) for _ in range(2)]
    killed = execute(s, "sleep", ticks=60)
    timed_out = execute(s, "sleep", ticks=60, timeout=1.0)
    wait_state(s, killed, {State.RUNNING})
    s.kill(killed)
    for eid in ids + [killed, timed_out]:
        wait_state(s, eid)
    expected = {"succeeded": 3.0, "failed": 2.0, "killed": 1.0, "timed_out": 1.0}

    def scraped() -> dict[str, float] | None:
        got = by_label(prom.query('sum by (state) (bolt_executions_finished_total{pack="bolt-test"})'), "state")
        return got if got == expected else None

    wait_until(scraped, 20, f"Prometheus to report {expected}")
    started = by_label(prom.query("sum by (action) (bolt_executions_started_total)"), "action")
    assert started == {"noop": 3.0, "fail": 2.0, "sleep": 2.0}
    assert by_label(prom.query("bolt_executions_running"), "") == {"": 0.0}
    assert by_label(prom.query('up{job="bolt"}'), "") == {"": 1.0}
    # Histograms of the executions and of the calls.
    assert by_label(prom.query('sum(bolt_execution_cpu_seconds_count{pack="bolt-test"})'), "") == {"": 7.0}
    # The span's attribute names: rpc.method and rpc.grpc.status_code (0 = OK).
    execs = by_label(
        prom.query('sum by (rpc_grpc_status_code) (bolt_rpc_duration_seconds_count{rpc_method="Execute"})'),
        "rpc_grpc_status_code",
    )
    assert execs == {"0": 7.0}
    # The agent itself.
    assert by_label(prom.query("bolt_agent_resident_memory_bytes > 1e6"), "") != {}
    assert by_label(prom.query("bolt_agent_cpu_seconds_total > 0"), "") != {}
    # The same under the standard process-exporter names, and the build.
    assert by_label(prom.query("process_resident_memory_bytes > 1e6"), "") != {}
    assert by_label(prom.query("process_cpu_seconds_total > 0"), "") != {}
    assert by_label(prom.query("process_open_fds > 3"), "") != {}
    assert list(by_label(prom.query("bolt_agent_build_info"), "version").values()) == [1.0]
    # Wall time: every ended execution, the one timed out at 1 s included.
    assert by_label(prom.query('sum(bolt_execution_duration_seconds_count{pack="bolt-test"})'), "") == {"": 7.0}
    assert by_label(prom.query('sum(bolt_execution_duration_seconds_sum{pack="bolt-test"}) >= 1'), "") != {}
    assert by_label(prom.query("bolt_caps_enforced"), "").get("", -1) in (0.0, 1.0)
    assert by_label(prom.query("bolt_data_disk_free_bytes > 0"), "") != {}
    assert by_label(prom.query("bolt_agent_certificate_expiry_timestamp_seconds > time()"), "") != {}


def test_metric_labels_stay_bounded(make_agent: Callable[..., Agent]) -> None:
    a = make_agent()
    s = client_for(a)
    for i in range(5):
        wait_state(s, execute(s, "echo", msg=f"x{i}", key=f"key-{i}"))
    text = http_get(a.metrics_url)
    series = [line for line in text.splitlines() if line.startswith("bolt_")]
    assert series, text
    for line in series:
        labels = line.split("{", 1)[1].rsplit("}", 1)[0] if "{" in line else ""
        assert not UUID.search(labels), f"an execution id in a label: {line}"
        assert "key-" not in labels and "x0" not in labels, f"an argument in a label: {line}"
    names = {line.split("{")[0].split(" ")[0] for line in series}
    for name in names:
        assert re.fullmatch(r"bolt_[a-z_]+", name), name
        if name.endswith("_total"):
            assert "_seconds_total" in name or not name.endswith("_seconds"), name


def test_the_endpoint_can_be_turned_off_and_a_taken_port_is_a_health_problem(
    make_agent: Callable[..., Agent],
) -> None:
    off = make_agent(env={"BOLT_METRICS_LISTEN": ""})
    assert not (off.data_dir / "metrics.addr").exists()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        b = make_agent(env={"BOLT_METRICS_LISTEN": f"127.0.0.1:{port}"})
        health = client_for(b).health()
        assert health.status is ServingStatus.DEGRADED
        assert any("telemetry.metrics_listen" in p for p in health.problems), health.problems
    finally:
        taken.close()
