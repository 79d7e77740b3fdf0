"""Hostile-input corpus (issue 9, item 6).

A table of hostile inputs, each sent to one real agent (started once for the
module): shell metacharacters, NUL bytes, invalid UTF-8, very long and deeply
nested values, traversal and absolute paths in every name field, Unicode
look-alikes, malformed protobuf and gRPC frames, slow-loris clients, TLS
handshakes that stop halfway, plain HTTP/2 and HTTP/1.1 on the TLS port,
hundreds of idle TCP connections on an agent short of descriptors, and a
certificate the CA signed that names no one.

Each case asserts the right answer: INVALID_ARGUMENT for a malformed name or
argument, NOT_FOUND for an unknown pack, action or execution,
RESOURCE_EXHAUSTED naming the limit for a size limit, a refused or dropped
connection for TLS problems; a hostile value that is *valid* for its parameter
must reach the action byte for byte and harm nothing. After the table the agent
is alive and healthy, still runs an action, logged no panic, and no file
appeared outside its own folders.

Everything runs on 127.0.0.1; every loop is bounded in count and time.
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import grpc
import pytest
from bolt.v1 import bolt_pb2 as pb
from bolt.v1 import bolt_pb2_grpc
from bolt_client import BoltClient, State
from bolt_testing import Agent, make_certs
from util import client_for, code_of, files_under, follow, healthy, stub_for, text, wait_state

C = grpc.StatusCode
OK = C.OK
INVALID = C.INVALID_ARGUMENT
NOT_FOUND = C.NOT_FOUND
EXHAUSTED = C.RESOURCE_EXHAUSTED
# A request whose protobuf cannot be parsed is a malformed call: the agent
# answers INVALID_ARGUMENT, as the proto's conventions say (gRPC's own table
# would allow INTERNAL). A crash, a hang, UNKNOWN or OK is never right.
UNPARSEABLE = (INVALID,)
# Violations of gRPC's framing (cardinality, compression flag, truncated
# frames): gRPC names INTERNAL or UNIMPLEMENTED; INVALID_ARGUMENT is fine too.
FRAMING = (INVALID, C.INTERNAL, C.UNIMPLEMENTED)

HANDSHAKE_TIMEOUT = 1.0  # configured below as limits.handshake_timeout
CANARY = f"bolt-canary-{uuid.uuid4().hex[:12]}"
UNKNOWN_ID = "01a225ce-7fa6-7612-aa06-d13e1477b87e"


# ---------------------------------------------------------------- the agent


@dataclass
class Ctx:
    agent: Agent
    #: Raw: the hostile requests.
    stub: bolt_pb2_grpc.BoltStub
    channel: grpc.Channel
    #: What a user has: to check what the hostile requests left behind.
    client: BoltClient
    base: Path
    finished_id: str
    before_files: set[str]
    before_packs: set[str]
    before_tmp: set[str]
    executed: list[str] = field(default_factory=list)


def _tmp_canaries() -> set[str]:
    """Entries named after this run's canary in /tmp, the temp folder and HOME
    (where an injected `touch` would have put them)."""
    roots = {Path("/tmp"), Path(tempfile.gettempdir()), Path(os.environ.get("HOME", "/"))}
    found: set[str] = set()
    for root in roots:
        try:
            found |= {str(root / n) for n in os.listdir(root) if CANARY in n}
        except OSError:
            pass
    return found


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("hostile")
    agent = Agent(base / "agent", config=f'[limits]\nhandshake_timeout = "{int(HANDSHAKE_TIMEOUT)}s"\n[exec]\nkill_grace = "2s"\n')
    agent.start()
    from conftest import channel_for

    ch = channel_for(agent)
    client = client_for(agent)
    eid = client.execute("bolt-test", "noop").execution_id
    _, end = follow(client, eid)
    assert end is not None and end.execution.state is State.SUCCEEDED
    c = Ctx(
        agent=agent,
        stub=bolt_pb2_grpc.BoltStub(ch),
        channel=ch,
        client=client,
        base=base,
        finished_id=eid,
        before_files={p for p in files_under(base) if not p.startswith(str(agent.root))},
        before_packs=files_under(agent.packs_dir),
        before_tmp=_tmp_canaries(),
    )
    yield c
    ch.close()
    client.close()
    agent.stop()


# ---------------------------------------------------------------- protobuf by hand


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def ld(num: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def vi(num: int, value: int) -> bytes:
    return varint(num << 3 | 0) + varint(value)


def entry(k: bytes, v: bytes) -> bytes:
    """One map<string,string> entry of ExecuteRequest.args (field 3)."""
    return ld(3, ld(1, k) + ld(2, v))


def grpc_frame(msg: bytes, flag: int = 0, length: int | None = None) -> bytes:
    n = len(msg) if length is None else length
    return bytes([flag]) + n.to_bytes(4, "big") + msg


# ---------------------------------------------------------------- cases


@dataclass
class Case:
    id: str
    run: Callable[[Ctx], Any]
    codes: tuple[grpc.StatusCode, ...]
    needle: str = ""
    check: Callable[[Ctx, Any], None] | None = None
    xfail: str = ""

    def param(self) -> Any:
        marks = [pytest.mark.xfail(strict=True, reason=self.xfail)] if self.xfail else []
        return pytest.param(self, id=self.id, marks=marks)


def execute(pack: str = "bolt-test", action: str = "echo", args: dict[str, str] | None = None, key: str = "",
            timeout: tuple[int, int] | None = None) -> Callable[[Ctx], Any]:
    def run(c: Ctx) -> Any:
        req = pb.ExecuteRequest(pack=pack, action=action, args=args if args is not None else {"msg": "x"}, idempotency_key=key)
        if timeout is not None:
            req.timeout.seconds, req.timeout.nanos = timeout
        r = c.stub.Execute(req, timeout=15)
        c.executed.append(r.execution_id)
        return r
    return run


def get_execution(eid: str) -> Callable[[Ctx], Any]:
    return lambda c: c.stub.GetExecution(pb.GetExecutionRequest(execution_id=eid), timeout=10)


def stream_output(eid: str, offset: int = 0) -> Callable[[Ctx], Any]:
    return lambda c: list(c.stub.StreamOutput(pb.StreamOutputRequest(execution_id=eid, offset=offset), timeout=10))


def kill(eid: str, grace: tuple[int, int] | None = None) -> Callable[[Ctx], Any]:
    def run(c: Ctx) -> Any:
        req = pb.KillRequest(execution_id=c.finished_id if eid == "FINISHED" else eid)
        if grace is not None:
            req.grace.seconds, req.grace.nanos = grace
        return c.stub.Kill(req, timeout=10)
    return run


def list_executions(**kw: Any) -> Callable[[Ctx], Any]:
    def run(c: Ctx) -> Any:
        since = kw.pop("since_seconds", None)
        req = pb.ListExecutionsRequest(**kw)
        if since is not None:
            req.since.seconds = since
        return c.stub.ListExecutions(req, timeout=10)
    return run


def list_actions(pack: str) -> Callable[[Ctx], Any]:
    return lambda c: c.stub.ListActions(pb.ListActionsRequest(pack=pack), timeout=10)


def raw(method: str, payload: bytes) -> Callable[[Ctx], Any]:
    """Sends `payload` as the serialized request, whatever it holds."""
    def run(c: Ctx) -> Any:
        call = c.channel.unary_unary(f"/bolt.v1.Bolt/{method}", request_serializer=None, response_deserializer=None)
        r = call(payload, timeout=10)
        if method == "Execute":
            c.executed.append(pb.ExecuteResponse.FromString(r).execution_id)
        return r
    return run


class Http2Answer(Exception):
    """A gRPC answer read by curl (no Python HTTP/2 library in the venv)."""

    def __init__(self, code: grpc.StatusCode, message: str, headers: str) -> None:
        super().__init__(f"{code} {message}")
        self.code, self.message, self.headers = code, message, headers


def http2(path: str, body: bytes, headers: tuple[str, ...] = ("content-type: application/grpc",)) -> Callable[[Ctx], Any]:
    """Sends `body` as the raw HTTP/2 request body (gRPC length-prefixed
    frames made by hand) over mTLS with curl; raises Http2Answer."""
    def run(c: Ctx) -> Any:
        curl = shutil.which("curl")
        if curl is None:
            pytest.skip("curl is not installed")
        a = c.agent
        hdr = []
        for h in (*headers, "te: trailers"):
            hdr += ["-H", h]
        t0 = time.monotonic()
        for _ in range(4):
            p = subprocess.run(
                [curl, "-sS", "--http2", "--path-as-is", "--max-time", "10",
                 "--cacert", str(a.ca), "--cert", str(a.client_cert), "--key", str(a.client_key),
                 "--resolve", f"localhost:{a.port}:127.0.0.1", f"https://localhost:{a.port}{path}",
                 *hdr, "--data-binary", "@-", "-D", "-", "-o", "/dev/null"],
                input=body, capture_output=True, timeout=20,
            )
            # curl 7.88 drops a complete early answer when the server then
            # resets the unread request body with RST_STREAM(NO_ERROR), as
            # RFC 9113 allows: ask again.
            if not (p.returncode == 92 and not p.stdout):
                break
        assert time.monotonic() - t0 < 12, "the agent must answer, not hang"
        out = p.stdout.decode(errors="replace")
        if p.returncode != 0 and "grpc-status" not in out:
            if "Protocol \"https\" not supported" in p.stderr.decode() or "HTTP2" in p.stderr.decode():
                pytest.skip("curl without HTTP/2")
            raise AssertionError(f"curl failed ({p.returncode}): {p.stderr.decode()} {out}")
        status = [l.split(":", 1)[1].strip() for l in out.splitlines() if l.lower().startswith("grpc-status:")]
        if not status and out.startswith("HTTP/2 431"):
            # Request header fields too large: refused before gRPC, as a size limit.
            raise Http2Answer(C.RESOURCE_EXHAUSTED, "HTTP 431", out)
        message = [l.split(":", 1)[1].strip() for l in out.splitlines() if l.lower().startswith("grpc-message:")]
        assert status, f"no grpc-status in the answer:\n{out}"
        code = {s.value[0]: s for s in C}[int(status[-1])]
        from urllib.parse import unquote

        raise Http2Answer(code, unquote(message[-1]) if message else "", out)
    return run


def verbatim(value: str) -> Case:
    """A hostile value that is valid for echo's free `msg` string: it must
    reach the action byte for byte, as one argv element, and harm nothing."""
    def check(c: Ctx, resp: Any) -> None:
        chunks, end = follow(c.client, resp.execution_id)
        assert end is not None and end.execution.state is State.SUCCEEDED, end
        out = text(chunks)
        assert f"argv:--msg={value}\n" in out, out
        assert "argv:--count=1\n" in out and "argv:--loud=false\n" in out, out
        assert end.execution.args["msg"] == value
        if "\n" not in value:
            assert f"env:BOLT_ARG_MSG={value}\n" in out, out
    return Case(f"verbatim-msg-{len(value)}-{value.replace(CANARY, 'CANARY')[:24]!r}", execute(args={"msg": value}), (OK,), check=check)


def canonical_int(value: str, passed: str) -> Case:
    """An integer in a form a shell would misread (0010 is octal 8 to bash):
    accepted by its range check, it reaches the action in canonical decimal."""
    def check(c: Ctx, resp: Any) -> None:
        chunks, end = follow(c.client, resp.execution_id)
        out = text(chunks)
        assert end is not None and end.execution.state is State.SUCCEEDED, end
        assert f"argv:--count={passed}\n" in out and f"env:BOLT_ARG_COUNT={passed}\n" in out, out
        assert end.execution.args["count"] == passed
    return Case(f"int-canonical-{value!r}", execute(args={"msg": "x", "count": value}), (OK,), check=check)


def idem_key(key: str, label: str) -> Case:
    """An idempotency key is an opaque string: a hostile one is stored
    verbatim, deduplicates a retry, and is never used as a path."""
    def check(c: Ctx, resp: Any) -> None:
        again = c.stub.Execute(pb.ExecuteRequest(pack="bolt-test", action="noop", idempotency_key=key), timeout=10)
        assert again.deduplicated and again.execution_id == resp.execution_id
        rec = c.stub.GetExecution(pb.GetExecutionRequest(execution_id=resp.execution_id), timeout=10)
        assert rec.idempotency_key == key
    return Case(f"idempotency-key-{label}", execute(action="noop", args={}, key=key), (OK,), check=check)


def recorded_timeout(seconds: int) -> Callable[[Ctx, Any], None]:
    def check(c: Ctx, resp: Any) -> None:
        rec = c.stub.GetExecution(pb.GetExecutionRequest(execution_id=resp.execution_id), timeout=10)
        assert rec.timeout.seconds == seconds, rec.timeout
    return check


def expect(cond: bool, what: Any) -> None:
    assert cond, what


def end_at_total(c: Ctx, chunks: Any) -> None:
    """An offset beyond the end gives only the closing message, at the real end."""
    rec = c.stub.GetExecution(pb.GetExecutionRequest(execution_id=c.finished_id), timeout=10)
    assert len(chunks) == 1 and chunks[0].end and not chunks[0].data, chunks
    assert chunks[0].offset == rec.stdout_bytes + rec.stderr_bytes, chunks[0].offset


def one_execution_for_two_messages(c: Ctx) -> Any:
    """Two Execute messages in one unary call: at most one execution starts."""
    def noops() -> int:
        r = c.stub.ListExecutions(pb.ListExecutionsRequest(action="noop", page_size=1000), timeout=10)
        return len(r.executions)
    before = noops()
    try:
        http2("/bolt.v1.Bolt/Execute", grpc_frame(ld(1, b"bolt-test") + ld(2, b"noop")) * 2)(c)
    finally:
        after = noops()
        assert after - before <= 1, f"{after - before} executions started by one unary call"


# Hostile names for every name field. Each is malformed for a pack, action or
# parameter name ([a-z0-9][a-z0-9-]*, at most 64 bytes).
MALFORMED_NAMES: list[tuple[str, str]] = [
    ("dotdot", ".."),
    ("dot", "."),
    ("traversal", "../bolt-test"),
    ("deep-traversal", "../../../../../../etc/passwd"),
    ("absolute", "/etc/passwd"),
    ("root", "/"),
    ("inner-traversal", "bolt-test/../bolt-test"),
    ("trailing-slash", "bolt-test/"),
    ("backslash", "..\\..\\windows"),
    ("url-encoded", "%2e%2e%2fetc"),
    ("tilde", "~root"),
    ("empty", ""),
    ("nul", "bolt-test\x00"),
    ("newline", "bolt-test\n"),
    ("space", " bolt-test"),
    ("upper", "BOLT-TEST"),
    ("leading-dash", "-rf"),
    ("glob", "bolt-*"),
    ("semicolon", "x;id"),
    ("cmd-subst", "$(id)"),
    ("backticks", "`id`"),
    ("pipe", "x|id"),
    ("and", "x&&id"),
    ("redirect", f">/tmp/{CANARY}-name"),
    ("fullwidth", "ｂｏｌｔ-ｔｅｓｔ"),
    ("cyrillic-a", "bolt-tеst"),  # Cyrillic е
    ("zwj", "bolt\u200d-test"),
    ("zero-width-space", "bolt-test\u200b"),
    ("rtl-override", "\u202etset-tlob"),
    ("combining", "bolt-te\u0301st"),
    ("long-10k", "a" * 10_000),
    ("long-65", "a" * 65),
]
# A subset for the fields where each case costs the same code path.
SOME_MALFORMED = [n for n in MALFORMED_NAMES if n[0] in {
    "dotdot", "traversal", "absolute", "nul", "fullwidth", "cyrillic-a", "rtl-override", "long-10k", "empty", "cmd-subst"}]

BAD_IDS: list[tuple[str, str]] = [
    ("traversal", "../../etc/passwd"),
    ("absolute", "/etc/passwd"),
    ("uuid-then-traversal", f"{UNKNOWN_ID}/../.."),
    ("uuid-nul", f"{UNKNOWN_ID}\x00"),
    ("uuid-newline", f"{UNKNOWN_ID}\n"),
    ("fullwidth-digits", "０１a225ce-7fa6-7612-aa06-d13e1477b87e"),
    ("cyrillic-a", "01а225ce-7fa6-7612-aa06-d13e1477b87e"),
    ("glob", "01a225ce-*"),
    ("long-10k", "0" * 10_000),
    ("shell", "$(touch /tmp/x)"),
]


def build_cases() -> list[Any]:
    cases: list[Case] = []
    add = cases.append

    # -- name fields: pack, action, argument names ------------------------
    for label, name in MALFORMED_NAMES:
        add(Case(f"pack-{label}", execute(pack=name), (INVALID,), "invalid pack name"))
    for label, name in MALFORMED_NAMES:
        add(Case(f"action-{label}", execute(action=name), (INVALID,), "invalid action name"))
    for label, name in SOME_MALFORMED + [("cyrillic-s", "mѕg"), ("msg-nul", "msg\x00"), ("msg-upper", "MSG"),
                                         ("env-injection", "msg=x BOLT_PACK"), ("dash-prefix", "--msg")]:
        add(Case(f"arg-name-{label}", execute(args={"msg": "x", name: "1"}), (INVALID,), "unknown argument"))
    add(Case("pack-unknown", execute(pack="nope"), (NOT_FOUND,), 'no pack "nope"'))
    add(Case("pack-unknown-max-len", execute(pack="a" * 64), (NOT_FOUND,), "no pack"))
    add(Case("action-unknown", execute(action="nope"), (NOT_FOUND,), 'has no action "nope"'))
    add(Case("action-of-other-pack-by-traversal", execute(pack="bolt-test", action="..%2fecho"), (INVALID,), "invalid action name"))

    # -- execution ids and page tokens -----------------------------------
    for label, bad in BAD_IDS:
        add(Case(f"get-id-{label}", get_execution(bad), (INVALID,), "is not an execution id"))
    for label, bad in BAD_IDS[:5]:
        add(Case(f"stream-id-{label}", stream_output(bad), (INVALID,), "is not an execution id"))
        add(Case(f"kill-id-{label}", kill(bad), (INVALID,), "is not an execution id"))
    for label, bad in BAD_IDS[:6]:
        add(Case(f"page-token-{label}", list_executions(page_token=bad), (INVALID,), "is not an execution id"))
    add(Case("get-id-unknown", get_execution(UNKNOWN_ID), (NOT_FOUND,), "no execution"))
    add(Case("stream-id-unknown", stream_output(UNKNOWN_ID), (NOT_FOUND,)))
    add(Case("kill-id-unknown", kill(UNKNOWN_ID), (NOT_FOUND,)))

    # -- name filters -----------------------------------------------------
    for label, name in [("traversal", "../bolt-test"), ("absolute", "/etc"), ("nul", "bolt-test\x00")]:
        add(Case(f"list-actions-filter-{label}", list_actions(name), (INVALID,), "pack"))
    add(Case("list-executions-pack-filter-traversal", list_executions(pack="../../etc"), (INVALID,), "pack"))
    add(Case("list-executions-action-filter-absolute", list_executions(action="/bin/sh"), (INVALID,), "action"))

    # -- idempotency keys: opaque, but bounded ----------------------------
    for label, key in [("traversal", "../../etc/passwd"), ("absolute", "/etc/shadow"),
                       ("shell", f"$(touch /tmp/{CANARY}-key)"), ("rtl", "\u202ekey"), ("newline", "k\ney"),
                       ("fullwidth", "ｋｅｙ"), ("nul", "k\x00ey")]:
        add(idem_key(f"{key}-{CANARY}", label))
    add(idem_key(("k" * 128 + CANARY)[-128:], "exactly-128-bytes"))
    add(Case("idempotency-key-129-bytes", execute(action="noop", args={}, key="k" * 129), (EXHAUSTED,),
             "limits.max_idempotency_key_bytes"))
    add(Case("idempotency-key-10k", execute(action="noop", args={}, key="k" * 10_000), (EXHAUSTED,),
             "limits.max_idempotency_key_bytes"))
    add(Case("idempotency-key-multibyte-over", execute(action="noop", args={}, key="é" * 65), (EXHAUSTED,),
             "limits.max_idempotency_key_bytes"))

    # -- values: shell metacharacters and look-alikes that are valid ------
    for value in [
        f"; touch /tmp/{CANARY}-semi",
        f"$(touch /tmp/{CANARY}-subst)",
        f"`touch /tmp/{CANARY}-tick`",
        f"| touch /tmp/{CANARY}-pipe",
        f"&& touch /tmp/{CANARY}-and",
        f"|| touch /tmp/{CANARY}-or",
        f"> /tmp/{CANARY}-redirect",
        f">> /tmp/{CANARY}-append 2>&1",
        "< /etc/passwd",
        f"\ntouch /tmp/{CANARY}-newline\n",
        f"\r\ntouch /tmp/{CANARY}-crlf",
        f"; touch {CANARY}-relative; touch ~/{CANARY}-home",
        "*", "/etc/*", "~root", "$HOME ${IFS} $0 $$",
        "'\"\\",
        "--count=100 --loud=true",
        "-n",
        f"x\nargv:--color=red",
        "\u202eevil\u202c ｆｕｌｌ ѕ \u200d 🦀",
        "x" * 4096,  # exactly max_length
    ]:
        add(verbatim(value))

    # -- values that are invalid for their parameter -----------------------
    def arg(label: str, args: dict[str, str], needle: str, action: str = "echo") -> None:
        add(Case(f"value-{label}", execute(action=action, args=args), (INVALID,), needle))
    arg("msg-nul-middle", {"msg": "a\x00b"}, "NUL")
    arg("msg-nul-only", {"msg": "\x00"}, "NUL")
    arg("msg-nul-shell", {"msg": f"x\x00; touch /tmp/{CANARY}-nul"}, "NUL")
    arg("msg-4097", {"msg": "x" * 4097}, "max_length")
    arg("msg-4096-multibyte-over", {"msg": "é" * 2049}, "max_length")
    for value, passed in [("+5", "5"), ("05", "5"), ("0010", "10"), ("0099", "99"), ("+0100", "100")]:
        add(canonical_int(value, passed))
    for v in ["1; id", "$(id)", "1e3", "0x10", " 5", "5\n", "", "５", "١", "99999999999999999999", "-1", "101", "1\x00"]:
        arg(f"count-{v!r}", {"msg": "x", "count": v}, '"count"')
    for v in ["TRUE", "1", "yes", "true ", "", "true\x00"]:
        arg(f"loud-{v!r}", {"msg": "x", "loud": v}, '"loud"')
    for v in ["RED", "rеd", "red;id", "red\n", "", "ｒｅｄ", "red\x00", "../red"]:
        arg(f"color-{v!r}", {"msg": "x", "color": v}, '"color"')
    for v in ["1;id", "`id`", "1\n2", "1\n", "１", "٣", "1.5.5", "$(sleep 9)", "1 ", "../1"]:
        arg(f"interval-{v!r}", {"ticks": "1", "interval": v}, "does not match", action="sleep")
    arg("ticks-huge", {"ticks": "9" * 40}, '"ticks"', action="sleep")
    arg("ticks-negative", {"ticks": "-1"}, "below the minimum", action="sleep")
    arg("missing-required", {}, 'missing required argument "msg"')
    arg("empty-arg-name", {"msg": "x", "": "1"}, "unknown argument")

    # -- sizes ------------------------------------------------------------
    add(Case("msg-64KiB-plus-1", execute(args={"msg": "x" * (64 * 1024 + 1)}), (EXHAUSTED,), "limits.max_arg_bytes"))
    add(Case("msg-1MiB", execute(args={"msg": "x" * (1 << 20)}), (EXHAUSTED,), "limits.max_arg_bytes"))
    add(Case("msg-1MiB-nul", execute(args={"msg": "\x00" * (1 << 20)}), (EXHAUSTED,), "limits.max_arg_bytes"))
    add(Case("args-300x1KiB", execute(args={f"a{i}": "x" * 1024 for i in range(300)}), (EXHAUSTED,), "limits.max_args_bytes"))
    add(Case("arg-name-300KiB", execute(args={"msg": "x", "n" * (300 * 1024): "1"}), (EXHAUSTED,), "limits.max_args_bytes"))
    add(Case("arg-name-10k", execute(args={"msg": "x", "n" * 10_000: "1"}), (INVALID,), "unknown argument"))
    add(Case("args-10000-tiny", execute(args={"msg": "x", **{f"a{i}": "1" for i in range(10_000)}}), (INVALID,), "unknown argument"))
    add(Case("message-4MiB-plus", execute(args={"msg": "x" * (4 * 1024 * 1024 + 16)}), (EXHAUSTED,), "limits.max_message_bytes"))
    add(Case("message-8MiB-many-args", execute(args={f"a{i}": "x" * (1 << 20) for i in range(8)}), (EXHAUSTED,), "limits.max_message_bytes"))
    add(Case("page-token-1MiB", list_executions(page_token="0" * (1 << 20)), (INVALID,), "is not an execution id"))
    add(Case("get-id-4MiB-plus", get_execution("0" * (4 * 1024 * 1024 + 16)), (EXHAUSTED,), "limits.max_message_bytes"))

    # -- odd values of other fields ----------------------------------------
    add(Case("timeout-negative", execute(action="noop", args={}, timeout=(-1, 0)), (INVALID,), "timeout"))
    add(Case("timeout-negative-nanos", execute(action="noop", args={}, timeout=(0, -1)), (INVALID,), "timeout"))
    add(Case("timeout-nanos-overflow", execute(action="noop", args={}, timeout=(0, 1_000_000_000)), (INVALID,), "timeout"))
    add(Case("timeout-i64-max-is-capped", execute(action="noop", args={}, timeout=(2**63 - 1, 999_999_999)), (OK,),
             check=recorded_timeout(60)))
    add(Case("kill-grace-negative", kill("FINISHED", grace=(-5, 0)), (INVALID,), "grace"))
    add(Case("kill-grace-bad-nanos", kill("FINISHED", grace=(1, -1)), (INVALID,), "grace"))
    add(Case("list-states-unknown", list_executions(states=[99]), (INVALID,), "unknown state"))
    add(Case("list-states-negative", list_executions(states=[-7]), (INVALID,), "unknown state"))
    add(Case("list-page-size-u32-max", list_executions(page_size=2**32 - 1), (OK,),
             check=lambda c, r: expect(len(r.executions) <= 1000, "a page beyond 1000")))
    add(Case("list-since-far-past", list_executions(since_seconds=-(2**62)), (OK, INVALID)))
    add(Case("list-caller-traversal", list_executions(caller="../../etc/passwd"), (OK,),
             check=lambda c, r: expect(not r.executions, r)))
    add(Case("stream-offset-u64-max", lambda c: list(c.stub.StreamOutput(
        pb.StreamOutputRequest(execution_id=c.finished_id, offset=2**64 - 1), timeout=10)), (OK, C.OUT_OF_RANGE, INVALID),
        check=end_at_total))

    # -- protobuf built by hand --------------------------------------------
    execute_ok = ld(1, b"bolt-test") + ld(2, b"noop")
    for label, method, payload in [
        ("utf8-pack", "Execute", ld(1, b"\xff\xfe") + ld(2, b"echo")),
        ("utf8-action", "Execute", ld(1, b"bolt-test") + ld(2, b"ech\xc3")),
        ("utf8-arg-key", "Execute", ld(1, b"bolt-test") + ld(2, b"echo") + entry(b"m\xffsg", b"x")),
        ("utf8-arg-value", "Execute", ld(1, b"bolt-test") + ld(2, b"echo") + entry(b"msg", b"\x80\x80")),
        ("utf8-idempotency-key", "Execute", execute_ok + ld(4, b"key\xfe")),
        ("utf8-overlong-slash", "Execute", ld(1, b"\xc0\xaf\xc0\xafetc") + ld(2, b"echo")),
        ("utf8-surrogate", "Execute", ld(1, b"bolt-test") + ld(2, b"echo") + entry(b"msg", b"\xed\xa0\x80")),
        ("utf8-execution-id", "GetExecution", ld(1, b"\xff" * 36)),
        ("utf8-kill-id", "Kill", ld(1, b"\xfe" * 36)),
        ("utf8-stream-id", "StreamOutput", ld(1, b"\xfe" * 36)),
        ("utf8-page-token", "ListExecutions", ld(2, b"\xff")),
        ("utf8-list-filter", "ListActions", ld(1, b"\xff")),
        ("garbage", "Execute", b"\xff" * 32),
        ("garbage-health", "Health", b"\xde\xad\xbe\xef" * 8),
        ("truncated-field", "Execute", b"\x0a\x64abc"),
        ("length-2^40", "Execute", b"\x0a" + varint(2**40) + b"abc"),
        ("varint-11-bytes", "Execute", varint(15 << 3) + b"\xff" * 10 + b"\x01"),
        ("wire-type-7", "Execute", b"\x0f"),
        ("field-number-0", "Execute", b"\x02\x00"),
        ("known-field-wrong-wire-type", "Execute", vi(1, 1) + ld(2, b"noop")),
        ("groups-nested-200", "Execute", execute_ok + varint(15 << 3 | 3) * 200 + varint(15 << 3 | 4) * 200),
        ("groups-nested-100k-unclosed", "Execute", execute_ok + varint(15 << 3 | 3) * 100_000),
        ("group-end-unmatched", "Execute", execute_ok + varint(15 << 3 | 4)),
        ("duration-garbage", "Execute", execute_ok + ld(5, b"\xff\xff")),
        ("map-entry-garbage", "Execute", ld(1, b"bolt-test") + ld(2, b"echo") + ld(3, b"\x0a\x10x")),
    ]:
        add(Case(f"proto-{label}", raw(method, payload), UNPARSEABLE))
    add(Case("proto-unknown-fields-ignored", raw("ListActions", ld(99, b"junk" * 100) + vi(100, 7) + ld(1, b"bolt-test")), (OK,),
             check=lambda c, r: expect(len(pb.ListActionsResponse.FromString(r).actions) > 0, r)))
    add(Case("proto-duplicate-field-last-wins-bad", raw("Execute", execute_ok + ld(1, b"../../etc")), (INVALID,), "invalid pack name"))
    add(Case("proto-duplicate-field-last-wins-good", raw("Execute", ld(1, b"../../etc") + execute_ok), (OK,)))
    add(Case("proto-empty-execute", raw("Execute", b""), (INVALID,), "invalid pack name"))
    add(Case("proto-empty-map-entry", raw("Execute", ld(1, b"bolt-test") + ld(2, b"echo") + ld(3, b"")), (INVALID,), "unknown argument"))

    # -- gRPC framing on the wire (HTTP/2 over mTLS, by curl) ---------------
    path = "/bolt.v1.Bolt/Execute"
    body = execute_ok
    health = "/bolt.v1.Bolt/Health"
    for label, p, data, codes, needle in [
        ("prefix-longer-than-body", path, grpc_frame(body, length=1000), FRAMING, ""),
        ("prefix-beyond-limit", path, grpc_frame(body, length=0x7FFFFFFF), (EXHAUSTED,), "limits.max_message_bytes"),
        ("prefix-u32-max", path, grpc_frame(body, length=0xFFFFFFFF), (EXHAUSTED,), "limits.max_message_bytes"),
        ("prefix-4MiB-plus-1", path, grpc_frame(body, length=4 * 1024 * 1024 + 1), (EXHAUSTED,), "limits.max_message_bytes"),
        ("partial-prefix", path, b"\x00\x00", FRAMING, ""),
        ("compressed-flag-without-encoding", health, grpc_frame(b"", flag=1), FRAMING, ""),
        ("flag-byte-0xff", health, grpc_frame(b"", flag=0xFF), FRAMING, ""),
        ("no-message", health, b"", FRAMING, ""),
        ("two-messages-to-unary", health, grpc_frame(b"") * 2, FRAMING + (OK,), ""),
        ("trailing-garbage", health, grpc_frame(b"") + b"\xff" * 7, FRAMING + (OK,), ""),
        ("invalid-utf8-pack", path, grpc_frame(ld(1, b"\xff") + ld(2, b"echo")), UNPARSEABLE, ""),
        # Answered from the headers alone: an empty body avoids the reset race.
        ("unknown-method", "/bolt.v1.Bolt/Nope", b"", (C.UNIMPLEMENTED,), ""),
        ("unknown-service", "/bolt.v2.Bolt/Health", b"", (C.UNIMPLEMENTED,), ""),
        ("path-traversal", "/bolt.v1.Bolt/../../bolt.v1.Bolt/Health", b"", (C.UNIMPLEMENTED,), ""),
        ("path-absolute-file", "//etc/passwd", b"", (C.UNIMPLEMENTED,), ""),
    ]:
        add(Case(f"h2-{label}", http2(p, data), codes, needle))
    add(Case("h2-two-executes-to-unary", one_execution_for_two_messages, FRAMING + (OK,)))
    add(Case("h2-header-60KiB", http2(health, grpc_frame(b""), ("content-type: application/grpc", "x-big: " + "a" * 60_000)),
             (EXHAUSTED,)))
    add(Case("h2-grpc-timeout-garbage", http2(health, grpc_frame(b""), ("content-type: application/grpc", "grpc-timeout: 99999999999999999999S")),
             (OK, INVALID)))
    add(Case("h2-content-type-json", http2(health, grpc_frame(b""), ("content-type: application/json",)), FRAMING + (OK,)))
    add(Case("h2-gzip-encoding", http2(health, b"",
                                      ("content-type: application/grpc", "grpc-encoding: gzip")), FRAMING))
    add(Case("h2-unknown-encoding", http2(health, b"",
                                          ("content-type: application/grpc", "grpc-encoding: evil; rm -rf /")), FRAMING))
    return [c.param() for c in cases]


CASES = build_cases()


def test_corpus_is_large_enough():
    assert len(CASES) >= 100, len(CASES)


@pytest.mark.parametrize("case", CASES)
def test_hostile_input(ctx: Ctx, case: Case) -> None:
    """One hostile input: the right status at once, a bounded message, and the
    agent still alive; a valid hostile value is checked by the case."""
    t0 = time.monotonic()
    try:
        resp = case.run(ctx)
        code, msg = OK, ""
    except grpc.RpcError as e:
        code, msg, resp = e.code(), e.details() or "", None
    except Http2Answer as e:
        code, msg, resp = e.code, e.message, None
    assert time.monotonic() - t0 < 12, "the agent must answer at once"
    assert code in case.codes, f"got {code} {msg!r}, want one of {case.codes}"
    assert code not in (C.UNKNOWN, C.UNAVAILABLE, C.DEADLINE_EXCEEDED)
    if case.needle:
        assert case.needle in msg, msg
    assert len(msg) < 2000, f"the error message echoes the hostile input ({len(msg)} chars)"
    if code == OK and case.check is not None:
        case.check(ctx, resp)
    assert ctx.agent.alive(), ctx.agent.log()


# ---------------------------------------------------------------- connections


def _client_tls(a: Agent, alpn: bool = True, **kw: Any) -> ssl.SSLContext:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls.load_verify_locations(str(a.ca))
    tls.load_cert_chain(str(a.client_cert), str(a.client_key))
    if alpn:
        tls.set_alpn_protocols(["h2"])
    for k, v in kw.items():
        setattr(tls, k, v)
    return tls


def _connect(a: Agent) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", a.port), timeout=5)
    s.settimeout(0.2)
    return s


def _closed_within(s: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """True when the peer closes (EOF or reset) within `seconds`; also what it sent."""
    data = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True, data
        if not chunk:
            return True, data
        data += chunk
        if len(data) > 1 << 20:
            return False, data
    return False, data


SLOW = ["idle", "one-byte", "partial-hello", "hello-only", "half-client-flight"]


def _slow_client(a: Agent, kind: str) -> socket.socket:
    if kind == "idle":
        return _connect(a)
    if kind == "one-byte":
        s = _connect(a)
        s.sendall(b"\x16")
        return s
    s = _connect(a)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = _client_tls(a).wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    if kind == "partial-hello":
        s.sendall(hello[: len(hello) // 2])
        return s
    s.sendall(hello)
    if kind == "hello-only":
        return s
    # half-client-flight: read the server's whole flight, let the client
    # answer, and send only half of that answer.
    flight = b""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            flight += s.recv(65536)
        except socket.timeout:
            pass
        inc.write(flight)
        flight = b""
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            if out.pending:
                break
    answer = out.read()
    assert answer, "the client produced no final flight"
    s.sendall(answer[: len(answer) // 2])
    return s


@pytest.mark.parametrize("kind", SLOW)
def test_slow_loris_is_dropped_after_the_handshake_timeout_while_others_are_served(ctx: Ctx, kind: str) -> None:
    a = ctx.agent
    socks = [_slow_client(a, kind) for _ in range(50 if kind == "idle" else 10)]
    opened = time.monotonic()
    try:
        # Meanwhile a well-behaved client, on a new connection, is served.
        fresh = client_for(a)
        t0 = time.monotonic()
        assert healthy(fresh)
        assert time.monotonic() - t0 < HANDSHAKE_TIMEOUT, "a good client must not wait behind slow ones"
        for s in socks:
            closed, data = _closed_within(s, max(0.0, opened + HANDSHAKE_TIMEOUT + 3 - time.monotonic()))
            assert closed, f"{kind}: still open {time.monotonic() - opened:.1f}s after connecting"
            assert b"HTTP" not in data
        assert time.monotonic() - opened >= HANDSHAKE_TIMEOUT * 0.8 or kind not in ("idle", "hello-only"), \
            "dropped before the handshake timeout"
    finally:
        for s in socks:
            s.close()
    assert healthy(ctx.client)
    assert "TLS handshake timed out" in ctx.agent.log() or kind == "one-byte"




# Connections that never speak TLS, beyond `limits.max_handshakes`, on an agent
# short of descriptors: the oldest are shed, calls and pack rescans go on.
def test_idle_tcp_connections_starve_neither_calls_nor_packs(make_agent) -> None:  # type: ignore[no-untyped-def]
    a = make_agent(config='[packs]\nrescan_interval = "200ms"\n[limits]\nhandshake_timeout = "30s"\n')
    resource.prlimit(a.proc.pid, resource.RLIMIT_NOFILE, (256, 256))
    client = client_for(a)
    assert client.list_actions()
    idle = []
    try:
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", a.port))
            idle.append(s)
        time.sleep(1.5)  # several rescans while the connections are open
        fresh = client_for(a)
        assert healthy(fresh)
        assert {x.name for x in fresh.list_actions()} >= {"echo", "noop"}
        eid = fresh.execute("bolt-test", "noop").execution_id
        assert wait_state(fresh, eid).state is State.SUCCEEDED
    finally:
        for s in idle:
            s.close()


# A certificate the CA signed that names no one (no SAN, no CN).
def test_a_certificate_without_any_name_is_told_so(ctx: Ctx) -> None:
    agent = ctx.agent
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ca_key = serialization.load_pem_private_key((agent.certs / "ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((agent.certs / "ca.crt").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.ORGANIZATION_NAME, "nameless")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    crt, pem = agent.root / "nameless.crt", agent.root / "nameless.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    nameless = stub_for(agent, crt, pem)
    code, details = code_of(lambda: nameless.Health(pb.HealthRequest(), timeout=5))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "names no identity" in details, details


def test_an_anonymous_connection_that_sends_nothing_after_tls_is_dropped(ctx: Ctx) -> None:
    a = ctx.agent

    def anonymous(preface: bool) -> ssl.SSLSocket:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        tls.load_verify_locations(str(a.ca))
        tls.set_alpn_protocols(["h2"])
        s = tls.wrap_socket(socket.create_connection(("127.0.0.1", a.port), timeout=5), server_hostname="localhost")
        if preface:
            s.sendall(H2_PREFACE)
        s.settimeout(0.2)
        return s

    socks = {"nothing": anonymous(False), "preface-only": anonymous(True)}
    opened = time.monotonic()
    try:
        still_open = []
        for label, s in socks.items():
            closed, _ = _closed_within(s, max(0.0, opened + HANDSHAKE_TIMEOUT + 4 - time.monotonic()))
            if not closed:
                still_open.append(label)
        assert not still_open, f"anonymous idle connections still open after {time.monotonic() - opened:.1f}s: {still_open}"
    finally:
        for s in socks.values():
            s.close()
    assert healthy(ctx.client)


def _raw_conversation(payload: bytes) -> Callable[[Agent], tuple[bool, bytes]]:
    def run(a: Agent) -> tuple[bool, bytes]:
        s = _connect(a)
        try:
            s.sendall(payload)
            return _closed_within(s, HANDSHAKE_TIMEOUT + 3)
        finally:
            s.close()
    return run


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
# HEADERS for a Health call in HPACK literal form: plain HTTP/2, no TLS.
H2_HEADERS = b"".join(b"\x00" + bytes([len(k)]) + k + bytes([len(v)]) + v for k, v in [
    (b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/bolt.v1.Bolt/Health"),
    (b":authority", b"localhost"), (b"content-type", b"application/grpc"), (b"te", b"trailers")])
H2_CLEARTEXT_CALL = (H2_PREFACE + len(H2_HEADERS).to_bytes(3, "big") + b"\x01\x04\x00\x00\x00\x01" + H2_HEADERS
                     + b"\x00\x00\x05\x00\x01\x00\x00\x00\x01" + grpc_frame(b""))

RAW = {
    "plain-http2-preface": H2_PREFACE,
    "plain-http2-grpc-call": H2_CLEARTEXT_CALL,
    "http1.1-get": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    "http1.1-upgrade-h2c": b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
    "http1.1-post-grpc": b"POST /bolt.v1.Bolt/Health HTTP/1.1\r\nHost: x\r\nContent-Type: application/grpc\r\nContent-Length: 5\r\n\r\n\x00\x00\x00\x00\x00",
    "garbage-64KiB": bytes((i * 131 + 7) % 256 for i in range(64 * 1024)),
    "tls-record-huge-length": b"\x16\x03\x01\xff\xff" + b"\x01" * 64,
    "ssl2-client-hello": b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10" + b"\x07\x00\xc0" * 7 + b"\x00" * 16,
    "tls-alert-first": b"\x15\x03\x03\x00\x02\x02\x28",
    "nul-bytes": b"\x00" * 4096,
}


@pytest.mark.parametrize("label", sorted(RAW))
def test_non_tls_bytes_on_the_tls_port_are_dropped(ctx: Ctx, label: str) -> None:
    t0 = time.monotonic()
    closed, data = _raw_conversation(RAW[label])(ctx.agent)
    assert closed, f"{label}: connection still open after {time.monotonic() - t0:.1f}s"
    # Nothing but (at most) a TLS alert comes back: no HTTP answer, no gRPC.
    assert not data or data[:1] == b"\x15", data[:64]
    assert b"HTTP" not in data and b"grpc" not in data
    assert healthy(ctx.client)


def test_plain_grpc_without_tls_is_refused(ctx: Ctx) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{ctx.agent.port}") as ch:
        code, _ = code_of(lambda: bolt_pb2_grpc.BoltStub(ch).Health(pb.HealthRequest(), timeout=5))
    assert code == C.UNAVAILABLE
    assert healthy(ctx.client)


def _tls_handshake(a: Agent, tls: ssl.SSLContext) -> Exception | None:
    with socket.create_connection(("127.0.0.1", a.port), timeout=5) as raw_sock:
        try:
            with tls.wrap_socket(raw_sock, server_hostname="localhost") as s:
                s.settimeout(3)
                # With TLS 1.3 a refused client certificate shows on the first read.
                s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                s.recv(1)
                return None
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError, socket.timeout) as e:
            return e


def test_tls12_only_client_is_refused(ctx: Ctx) -> None:
    tls = _client_tls(ctx.agent, maximum_version=ssl.TLSVersion.TLSv1_2)
    err = _tls_handshake(ctx.agent, tls)
    assert isinstance(err, ssl.SSLError), err
    assert healthy(ctx.client)


def test_tls_with_a_certificate_from_another_ca_is_refused(ctx: Ctx, tmp_path: Path) -> None:
    other = make_certs(tmp_path / "other")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls.load_verify_locations(str(ctx.agent.ca))
    tls.load_cert_chain(str(other / "client.crt"), str(other / "client.key"))
    tls.set_alpn_protocols(["h2"])
    err = _tls_handshake(ctx.agent, tls)
    assert err is not None, "a client certificate from another CA must fail the handshake"
    assert healthy(ctx.client)


def test_no_client_certificate_is_unauthenticated_on_every_rpc(ctx: Ctx) -> None:
    creds = grpc.ssl_channel_credentials(root_certificates=ctx.agent.ca.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{ctx.agent.port}", creds,
                             options=[("grpc.ssl_target_name_override", "localhost")]) as ch:
        s = bolt_pb2_grpc.BoltStub(ch)
        for call in [
            lambda: s.Execute(pb.ExecuteRequest(pack="bolt-test", action="echo", args={"msg": f"; touch /tmp/{CANARY}-anon"}), timeout=5),
            lambda: s.GetExecution(pb.GetExecutionRequest(execution_id=ctx.finished_id), timeout=5),
            lambda: s.Kill(pb.KillRequest(execution_id=ctx.finished_id), timeout=5),
            lambda: s.ListExecutions(pb.ListExecutionsRequest(), timeout=5),
            lambda: s.ListActions(pb.ListActionsRequest(), timeout=5),
        ]:
            code, msg = code_of(call)
            assert code == C.UNAUTHENTICATED, (code, msg)
    assert healthy(ctx.client)


def test_no_client_certificate_is_unauthenticated_on_health_and_reflection(ctx: Ctx) -> None:
    creds = grpc.ssl_channel_credentials(root_certificates=ctx.agent.ca.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{ctx.agent.port}", creds,
                             options=[("grpc.ssl_target_name_override", "localhost")]) as ch:
        check = ch.unary_unary("/grpc.health.v1.Health/Check", request_serializer=None, response_deserializer=None)
        code, _ = code_of(lambda: check(ld(1, b"../../etc/passwd"), timeout=5))
        assert code == C.UNAUTHENTICATED
        reflect = ch.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                   request_serializer=None, response_deserializer=None)
        code, _ = code_of(lambda: list(reflect(iter([ld(4, b"../../etc/passwd")]), timeout=5)))
        assert code == C.UNAUTHENTICATED
    assert healthy(ctx.client)


def test_http11_over_tls_is_not_served(ctx: Ctx) -> None:
    """A complete TLS handshake (without ALPN h2), then HTTP/1.1: no gRPC call
    is made and the connection ends."""
    tls = _client_tls(ctx.agent, alpn=False)
    with socket.create_connection(("127.0.0.1", ctx.agent.port), timeout=5) as raw_sock:
        with tls.wrap_socket(raw_sock, server_hostname="localhost") as s:
            s.settimeout(0.2)
            s.sendall(b"POST /bolt.v1.Bolt/Execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/grpc\r\n"
                      b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            data = b""
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    continue
                except (ssl.SSLError, OSError):
                    break
                if not chunk:
                    break
                data += chunk
            assert time.monotonic() < deadline, "the connection was neither answered nor closed"
    assert b"grpc-status: 0" not in data.lower()
    assert not data or not data.startswith(b"HTTP/1.1 200"), data[:200]
    assert healthy(ctx.client)




def _kill_action_of(supervisor_pid: int) -> None:
    """Cleanup: SIGKILL the process groups of the supervisor's children."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == supervisor_pid:
            try:
                os.killpg(int(fields[2]), 9)
            except OSError:
                pass


def test_a_huge_kill_grace_does_not_let_an_action_outlive_its_timeout(ctx: Ctx) -> None:
    req = pb.ExecuteRequest(pack="bolt-test", action="stubborn")
    req.timeout.seconds = 2
    eid = ctx.stub.Execute(req, timeout=10).execution_id
    rec = ctx.stub.GetExecution(pb.GetExecutionRequest(execution_id=eid), timeout=10)
    try:
        time.sleep(0.3)
        k = pb.KillRequest(execution_id=eid)
        k.grace.seconds = 2**63 - 1
        try:
            ctx.stub.Kill(k, timeout=10)
        except grpc.RpcError as e:
            assert e.code() == INVALID, e  # refusing such a grace is right too
            return
        # The action must end by its timeout (2 s) plus the agent's kill_grace (2 s).
        deadline = time.monotonic() + 2 + 2 + 2.5
        while time.monotonic() < deadline:
            rec = ctx.stub.GetExecution(pb.GetExecutionRequest(execution_id=eid), timeout=10)
            if rec.state not in (pb.STATE_PENDING, pb.STATE_RUNNING):
                break
            time.sleep(0.2)
        assert rec.state in (pb.STATE_KILLED, pb.STATE_TIMED_OUT), pb.State.Name(rec.state)
    finally:
        rec = ctx.stub.GetExecution(pb.GetExecutionRequest(execution_id=eid), timeout=10)
        if rec.state in (pb.STATE_PENDING, pb.STATE_RUNNING) and rec.supervisor_pid:
            _kill_action_of(rec.supervisor_pid)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and ctx.stub.GetExecution(
                    pb.GetExecutionRequest(execution_id=eid), timeout=10).state in (pb.STATE_PENDING, pb.STATE_RUNNING):
                time.sleep(0.2)


# ---------------------------------------------------------------- afterwards


def test_afterwards_the_agent_is_healthy_serves_and_created_nothing_outside_its_folders(ctx: Ctx) -> None:
    a = ctx.agent
    assert a.alive(), a.log()
    assert healthy(ctx.client)
    assert healthy(client_for(a)), "a new connection is served"
    # It still runs an action, with a hostile but valid value, verbatim.
    value = f"$(touch /tmp/{CANARY}-final); `id` | cat > /tmp/{CANARY}-final2"
    r = ctx.client.execute("bolt-test", "echo", {"msg": value})
    chunks, end = follow(ctx.client, r.execution_id)
    assert end is not None and end.execution.state is State.SUCCEEDED
    assert f"argv:--msg={value}\n" in text(chunks)
    # Every execution the table started has ended.
    for eid in [e for e in ctx.executed if e][:200]:
        _, end = follow(ctx.client, eid, timeout=20)
        assert end is not None and end.execution.state is State.SUCCEEDED, end
    # No file appeared outside the agent's folders, none in /tmp, the packs are untouched.
    assert _tmp_canaries() == ctx.before_tmp, _tmp_canaries()
    after = {p for p in files_under(ctx.base) if not p.startswith(str(a.root))}
    assert after == ctx.before_files, after - ctx.before_files
    assert files_under(a.packs_dir) == ctx.before_packs
    assert not list(a.root.glob(f"**/*{CANARY}*"))
    session = ctx.base.parent  # pytest's base temp folder of this session
    assert not [p for p in files_under(session) if CANARY in Path(p).name]
    assert "panicked" not in a.log(), a.log()
