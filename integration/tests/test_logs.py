"""The agent's JSON log lines, as an operator greps them: one flat object per
line, and every line about an execution carries its id, caller, pack and
action at the top level (the line recording its end included)."""

from __future__ import annotations

import json
from typing import Any, Callable

from bolt_client import State
from bolt_testing import Agent
from util import client_for, execute, wait_state, wait_until


def lines(a: Agent) -> list[dict[str, Any]]:
    out = []
    for raw in a.log_path.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            out.append(json.loads(raw))
    return out


def test_every_line_about_an_execution_names_it(make_agent: Callable[..., Agent]) -> None:
    a = make_agent()
    c = client_for(a)
    eid = execute(c, "echo", msg="hi")
    assert wait_state(c, eid).state == State.SUCCEEDED
    ended = wait_until(lambda: [l for l in lines(a) if l.get("message") == "ended" and l.get("id") == eid], 10, "the end line")
    line = ended[0]
    assert (line["pack"], line["action"], line["state"]) == ("bolt-test", "echo", "succeeded"), line
    assert line["caller"] and line["level"] == "INFO" and line["span"] == "end", line
    about = [l for l in lines(a) if l.get("id") == eid]
    assert {"execute", "ended"} <= {l.get("message") for l in about}, about
    # The audit line's arguments are a JSON object, not JSON inside a string.
    audit = next(l for l in about if l.get("message") == "execute" and l.get("target") == "audit")
    assert isinstance(audit["args"], dict) and audit["args"]["msg"] == "hi", audit
    for l in about:
        assert isinstance(l.get("span", ""), str) and "\x1b[" not in json.dumps(l), l


def test_text_logs_written_to_a_file_have_no_colour_codes(make_agent: Callable[..., Agent]) -> None:
    a = make_agent(config='[log]\nformat = "text"\n')
    c = client_for(a)
    eid = execute(c, "noop")
    wait_state(c, eid)
    text = wait_until(lambda: (t := a.log_path.read_text(errors="replace")) and eid in t and t, 10, "a line naming the execution")
    assert "\x1b[" not in text, text[:2000]
    # Short lines that say each thing once: no OpenTelemetry bookkeeping, and the
    # caller (and pack) named once per line though three spans know them.
    for line in (l for l in text.splitlines() if eid in l):
        assert "otel." not in line and "rpc.system" not in line, line
        assert line.count("caller=") <= 1 and line.count("pack=") <= 1, line
        assert len(line) < 300, (len(line), line)
