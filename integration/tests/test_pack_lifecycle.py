"""Pack lifecycle end to end (docs/packs.md): lint, build, publish, promote,
list, audit with the real `bolt-agent` CLI against a real S3 server (moto), and
three real agents (stages dev, test, prod; app "kafka") syncing from it.

What the CLI is expected to print with --json (the spec leaves the shape open):

`bolt-agent pack list [--stage S] --json`: one JSON array on stdout, one
object per (stage, pack) the stage indexes point to, ordered by stage (dev,
test, prod) then pack; a stage without an index has no rows:

    [{"stage": "test", "pack": "kafka-tools", "version": "1.2.0",
      "sha256": "<64 hex>", "targets": ["kafka"] or null, "generation": 7}]

  `generation` is that of the stage's index. Rows may carry more fields
  (e.g. updated_at, updated_by); the tests look at these six.

`bolt-agent pack audit [--pack NAME] [--trusted-key FILE]... --json`: one
JSON array on stdout, oldest first, one object per audit record:

    [{"at": "2026-01-02T03:04:05.678Z", "event": "publish" or "promote",
      "pack": "kafka-tools", "version": "1.2.0", "sha256": "<64 hex>",
      "stage": "test", "from_stage": null (publish) or "dev" / "test",
      "identity": "alice@laptop", "key_id": "<16 hex>", "verified": true}]

  `verified` is true when the record's signature checks out against one of
  the --trusted-key files, false when it does not, null when none is given.
  Rows may carry more fields (kind, host, ...).

Other assumptions beyond docs/packs.md: the S3 flags come after the
subcommand's own arguments; `keys gen` prints the key id (16 hex) on stdout;
`pack lint` prints its problem lines on stdout or stderr; an agent's installed
packs live in `<data_dir>/installed` (the default `sync.dir`); a sync failure
names the pack it is about (or, for a bad signature, the key id) in
`pack_sync.last_error` and in one of Health's problems.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest
from botocore.exceptions import ClientError
from bolt.v1 import bolt_pb2 as pb

from bolt_client import BoltClient, BoltError, DevBuild, Execution, NotFoundError, PackSync, ServingStatus, State
from bolt_testing import Agent, agent_bin, make_certs
from bolt_testing.s3 import MotoServer, key_id, load_private_key, open_envelope, sign_envelope
from util import client_for, code_of, follow, stub_for, text, wait_until

BUCKET = "bolt-packs"
PREFIX = "bolt"
STAGES = ("dev", "test", "prod")
SYNC = 15.0  # seconds for a change to reach an agent syncing every second
SLOW = 5  # seconds the `slow` action sleeps
# How a refused archive is explained (the size may be checked before the sha256).
CONTENT_MISMATCH = re.compile(r"sha256|size", re.IGNORECASE)


@dataclass
class World:
    root: Path
    s3: MotoServer
    keys: Path  # release.key/.pub (trusted by the agents), rogue.key/.pub (not)
    release_id: str
    rogue_id: str
    certs: Path  # ca, bolt-client, dev-alice (may run dev builds), dev-bob (may not)
    agents: dict[str, Agent]
    clients: dict[str, BoltClient]


def agent_config(stage: str, s3: MotoServer, trusted: Path, prefix: str = PREFIX, sync_extra: str = "") -> str:
    return f"""
[instance]
stage = "{stage}"
app = "kafka"

[sync]
enabled = true
bucket = "{s3.bucket}"
prefix = "{prefix}"
endpoint = "{s3.endpoint}"
region = "us-east-1"
path_style = true
interval = "1s"
jitter = 0.0
trusted_keys = ["{trusted}"]
{sync_extra}

[[authz.rules]]
identities = ["*"]
allow = ["execute", "read"]

[[authz.rules]]
identities = ["dev-alice"]
allow = ["dev"]
"""


def keygen(out: Path, name: str) -> str:
    """`keys gen`; returns what it printed."""
    p = subprocess.run([str(agent_bin()), "keys", "gen", "--out", str(out), "--name", name], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return p.stdout


def pub_key_id(pub: Path) -> str:
    from cryptography.hazmat.primitives import serialization

    return key_id(serialization.load_pem_public_key(pub.read_bytes()))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("lifecycle")
    # Virtualenvs are built as nobody, who must pass through to them.
    let_others_through(root)
    with MotoServer(BUCKET, log_dir=root) as s3:
        keys = root / "keys"
        keys.mkdir()
        keygen(keys, "release")
        keygen(keys, "rogue")
        certs = make_certs(root / "certs")
        for name in ("dev-alice", "dev-bob"):
            subprocess.run([str(agent_bin()), "certs", "issue", "--dir", str(certs), "--name", name], check=True, capture_output=True)
        agents: dict[str, Agent] = {}
        clients: dict[str, BoltClient] = {}
        try:
            for stage in STAGES:
                config = agent_config(stage, s3, keys / "release.pub")
                agents[stage] = Agent(root / f"agent-{stage}", packs=[], config=config, certs=certs, env=s3.env).start()
                clients[stage] = client_for(agents[stage])
            yield World(root, s3, keys, pub_key_id(keys / "release.pub"), pub_key_id(keys / "rogue.pub"), certs, agents, clients)
        finally:
            for c in clients.values():
                c.close()
            for a in agents.values():
                a.stop()


# --- the CLI -------------------------------------------------------------------


def local(*args: str) -> subprocess.CompletedProcess[str]:
    """bolt-agent without S3 (lint, build)."""
    return subprocess.run([str(agent_bin()), *args], capture_output=True, text=True, timeout=120)


def cli(w: World, *args: str) -> subprocess.CompletedProcess[str]:
    """bolt-agent with the bucket flags and AWS credentials of the moto server."""
    s3 = ["--bucket", BUCKET, "--prefix", PREFIX, "--endpoint", w.s3.endpoint, "--region", "us-east-1", "--path-style"]
    return subprocess.run(
        [str(agent_bin()), *args, *s3], capture_output=True, text=True, timeout=120, env={**os.environ, **w.s3.env}
    )


def ok(p: subprocess.CompletedProcess[str]) -> str:
    assert p.returncode == 0, f"{' '.join(map(str, p.args))} exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
    return p.stdout


def refused(p: subprocess.CompletedProcess[str], *words: str) -> str:
    """A refusal: non-zero exit and a message that names each of `words`."""
    assert p.returncode != 0, f"{' '.join(map(str, p.args))} should have failed:\n{p.stdout}\n{p.stderr}"
    assert p.stderr.strip(), "a refusal says why"
    for word in words:
        assert word in p.stderr, f"{word!r} not in the message: {p.stderr}"
    return p.stderr


def publish(w: World, pack: Path, stage: str, key: str = "release", identity: str = "ci@test") -> subprocess.CompletedProcess[str]:
    return cli(w, "pack", "publish", str(pack), "--stage", stage, "--key", str(w.keys / f"{key}.key"), "--identity", identity)


def promote(w: World, name: str, version: str, to: str, identity: str = "ci@test") -> subprocess.CompletedProcess[str]:
    return cli(w, "pack", "promote", name, version, "--to", to, "--key", str(w.keys / "release.key"), "--identity", identity)


# --- packs made by the tests ----------------------------------------------------------


def make_pack(
    root: Path,
    name: str,
    version: str | None,
    *,
    targets: list[str] | None = None,
    files: dict[str, str] | None = None,
    actions: dict[str, str] | None = None,
) -> Path:
    """A pack folder: `show` prints its version, `slow` sleeps then prints
    marker.txt from its own folder; `actions` adds NAME -> executable file."""
    d = Path(tempfile.mkdtemp(dir=root)) / name
    d.mkdir()
    manifest = f'name = "{name}"\n'
    if version is not None:
        manifest += f'version = "{version}"\n'
    if targets is not None:
        manifest += f"targets = {json.dumps(targets)}\n"
    scripts = {
        "show": ("show.sh", f'#!/bin/sh\necho "version {version}"\n'),
        "slow": ("slow.sh", f'#!/bin/sh\nsleep {SLOW}\ncat "$(dirname "$0")/marker.txt"\n'),
    }
    for action, entry in (actions or {}).items():
        scripts[action] = (entry, (files or {})[entry])
    for action, (entry, body) in scripts.items():
        manifest += f'\n[[actions]]\nname = "{action}"\nentrypoint = "{entry}"\ntimeout = "1m"\n'
        (d / entry).write_text(body)
        (d / entry).chmod(0o755)
    for path, body in (files or {}).items():
        if not (d / path).exists():
            (d / path).parent.mkdir(parents=True, exist_ok=True)
            (d / path).write_text(body)
    (d / "marker.txt").write_text(f"marker {version}\n")
    (d / "pack.toml").write_text(manifest)
    return d


# --- S3 ------------------------------------------------------------------------------


def release(w: World, pack: str, version: str) -> dict[str, Any]:
    """The release statement, checked against the trusted key."""
    return open_envelope(w.s3.get(f"{PREFIX}/releases/{pack}/{version}.json"), (w.keys / "release.pub").read_bytes())


def stage_index(w: World, stage: str) -> tuple[dict[str, Any], str]:
    """The stage's index payload (signature not checked) and its ETag."""
    obj = w.s3.client.get_object(Bucket=BUCKET, Key=f"{PREFIX}/stages/{stage}.json")
    return open_envelope(obj["Body"].read()), obj["ETag"]


def etag_or_none(w: World, key: str) -> str | None:
    try:
        return str(w.s3.client.head_object(Bucket=BUCKET, Key=key)["ETag"])
    except ClientError:
        return None


def forge_index(w: World, stage: str, pack: str, entry: dict[str, Any]) -> int:
    """Point `pack` of the stage at `entry` in a new index signed by the
    trusted key, as a compromised publisher could; returns its generation."""
    index, etag = stage_index(w, stage)
    index["packs"][pack] = entry
    index["generation"] += 1
    index["updated_by"] = "forger"
    body = sign_envelope(index, (w.keys / "release.key").read_bytes())
    w.s3.client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/stages/{stage}.json", Body=body, IfMatch=etag)
    return int(index["generation"])


def tamper(w: World, pack: str, version: str) -> str:
    """Swap the archive's `show` for one printing "hacked" (a same-length edit,
    so the tar stays well formed); returns the sha256 the index expects."""
    sha = release(w, pack, version)["sha256"]
    key = f"{PREFIX}/archives/{pack}/{sha}.tar.gz"
    tar = gzip.decompress(w.s3.get(key))
    evil = tar.replace(b'echo "version', b'echo "hacked ')
    assert evil != tar
    w.s3.put(key, gzip.compress(evil))
    return str(sha)


# --- agents ---------------------------------------------------------------------------


def versions(client: BoltClient, pack: str) -> set[str]:
    try:
        return {a.pack_version for a in client.list_actions(pack)}
    except NotFoundError:
        return set()


def wait_version(client: BoltClient, pack: str, version: str, timeout: float = SYNC) -> None:
    wait_until(lambda: versions(client, pack) == {version}, timeout, f"{pack} {version} to be installed")


def sync_state(client: BoltClient) -> PackSync:
    return client.agent_info().pack_sync


def wait_attempt(client: BoltClient, since: float) -> PackSync:
    """Until the agent has started a sync attempt after `since` (wall clock)."""
    def check() -> PackSync | None:
        s = sync_state(client)
        return s if s.last_attempt is not None and s.last_attempt.timestamp() > since else None

    return wait_until(check, SYNC, "a sync attempt")


def wait_error(client: BoltClient, needle: str) -> PackSync:
    """Until the last sync failed naming `needle`; checks Health says so too."""
    def check() -> PackSync | None:
        s = sync_state(client)
        return s if needle in s.last_error else None

    s = wait_until(check, SYNC, f"a sync error naming {needle}")
    assert s.failures > 0
    health = client.health()
    assert any(needle in p for p in health.problems), health.problems
    assert health.status is ServingStatus.DEGRADED
    return s


def wait_clean(client: BoltClient) -> None:
    wait_until(lambda: sync_state(client).last_error == "", SYNC, "a successful sync")


def run(client: BoltClient, pack: str, action: str, dev_build: DevBuild | None = None) -> tuple[Execution, str]:
    eid = client.execute(pack, action, dev_build=dev_build).execution_id
    chunks, end = follow(client, eid, timeout=60)
    assert end is not None
    return end.execution, text(chunks)


def output(client: BoltClient, eid: str) -> str:
    """stdout and stderr of a finished execution, for failure messages."""
    return text(client.stream_output(eid), None)


def shows(client: BoltClient, pack: str, version: str) -> None:
    e, out = run(client, pack, "show")
    assert (e.state, out, e.pack_version) == (State.SUCCEEDED, f"version {version}\n", version), e.error


# --- keys, lint, build (no S3) ----------------------------------------------------------------


def test_keys_gen_writes_a_private_key_and_a_public_key(tmp_path: Path) -> None:
    printed = keygen(tmp_path, "ops")
    private, public = tmp_path / "ops.key", tmp_path / "ops.pub"
    assert private.stat().st_mode & 0o777 == 0o600
    assert private.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    key = load_private_key(private.read_bytes())
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert key_id(key.public_key()) == pub_key_id(public)
    assert pub_key_id(public) in printed
    second = subprocess.run([str(agent_bin()), "keys", "gen", "--out", str(tmp_path), "--name", "ops"], capture_output=True)
    assert second.returncode != 0, "keys are never overwritten"


def test_lint_lists_every_problem_with_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "pack.toml").write_text(
        'name = "Bad_Name"\nversion = "1 0"\n'
        '[[actions]]\nname = "run"\nentrypoint = "missing.sh"\n'
        '[[actions]]\nname = "count"\nentrypoint = "count.sh"\n'
        '[actions.params.n]\ntype = "string"\nmin = 1\n'
    )
    (bad / "count.sh").write_text("#!/bin/sh\n")  # not executable
    p = local("pack", "lint", str(bad))
    assert p.returncode == 1, p
    lines = [l for l in (p.stdout + p.stderr).splitlines() if "pack.toml: " in l]
    problems = {}
    for line in lines:
        file, field, message = line.split(": ", 2)
        assert file.endswith("pack.toml") and message, line
        problems[field] = message
    assert set(problems) == {"name", "version", "actions[0].entrypoint", "actions[1].entrypoint", "actions[1].params.n"}, lines
    assert "Bad_Name" in problems["name"] and "missing.sh" in problems["actions[0].entrypoint"]
    assert "executable" in problems["actions[1].entrypoint"]

    good = make_pack(tmp_path, "lint-ok", "1.0.0")
    assert local("pack", "lint", str(good)).returncode == 0


def build(pack: Path, out: Path, *extra: str) -> tuple[str, Path]:
    stdout = ok(local("pack", "build", str(pack), "--out", str(out), *extra))
    m = re.search(r"sha256:([0-9a-f]{64}) (\S+)", stdout)
    assert m, stdout
    return m.group(1), Path(m.group(2))


def test_build_is_reproducible_and_normalised(tmp_path: Path) -> None:
    pack = make_pack(tmp_path, "repro", "1.2.3", files={"lib/data.txt": "data\n"})
    for hidden in (".git/config", ".venv/bin/python", "lib/__pycache__/x.pyc", ".env"):
        (pack / hidden).parent.mkdir(parents=True, exist_ok=True)
        (pack / hidden).write_text("hidden\n")
    sha1, path1 = build(pack, tmp_path / "out1")
    # Other mtimes and a group-writable file must not change a byte.
    later = time.time() + 3600
    for f in pack.rglob("*"):
        os.utime(f, (later, later))
    (pack / "lib" / "data.txt").chmod(0o664)
    sha2, path2 = build(pack, tmp_path / "out2")
    assert path1.name == path2.name == "repro-1.2.3.tar.gz"
    assert sha1 == sha2 == hashlib.sha256(path1.read_bytes()).hexdigest()
    assert path1.read_bytes() == path2.read_bytes()

    raw = path1.read_bytes()
    assert raw[4:8] == b"\0\0\0\0", "gzip header without a time"
    assert not raw[3] & 0x08, "gzip header without a file name"
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert [n.encode() for n in names] == sorted(n.encode() for n in names), "entries in byte order"
    parts = {part for n in names for part in Path(n).parts}
    assert not any(p.startswith(".") and p != "." for p in parts) and "__pycache__" not in parts, names
    assert any(n.endswith("pack.toml") for n in names) and any(n.endswith("lib/data.txt") for n in names)
    for m in members:
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", ""), m.name
        assert m.mode in (0o755, 0o644), (m.name, oct(m.mode))
        assert (m.mode == 0o755) == (m.isdir() or m.name.endswith(".sh")), (m.name, oct(m.mode))


def test_build_takes_the_version_from_the_manifest_or_the_flag(tmp_path: Path) -> None:
    bare = make_pack(tmp_path, "bare", None)
    assert local("pack", "build", str(bare), "--out", str(tmp_path / "o")).returncode != 0, "no version anywhere"
    _, path = build(bare, tmp_path / "o", "--version", "4.2.0")
    assert path.name == "bare-4.2.0.tar.gz"
    with tarfile.open(path, "r:gz") as tar:
        manifest = next(m for m in tar.getmembers() if m.name.endswith("pack.toml"))
        text_ = tar.extractfile(manifest).read().decode()  # type: ignore[union-attr]
    assert text_.startswith('version = "4.2.0"')

    versioned = make_pack(tmp_path, "versioned", "1.0.0")
    assert local("pack", "build", str(versioned), "--out", str(tmp_path / "o"), "--version", "2.0.0").returncode != 0
    _, path = build(versioned, tmp_path / "o", "--version", "1.0.0")
    assert path.name == "versioned-1.0.0.tar.gz"


# --- publish, promote, sync --------------------------------------------------------------------


def test_publish_to_test_reaches_the_test_agent_then_prod_on_promotion(world: World) -> None:
    w = world
    ok(publish(w, make_pack(w.root, "lc-basic", "1.0.0"), "test"))

    rel = release(w, "lc-basic", "1.0.0")
    sha = rel["sha256"]
    archive = w.s3.get(f"{PREFIX}/archives/lc-basic/{sha}.tar.gz")
    assert rel["kind"] == "release" and rel["version"] == "1.0.0" and rel["targets"] is None
    assert hashlib.sha256(archive).hexdigest() == sha and rel["size"] == len(archive)
    assert open_envelope(w.s3.get(f"{PREFIX}/archives/lc-basic/{sha}.json"), (w.keys / "release.pub").read_bytes()) == rel
    index = open_envelope(w.s3.get(f"{PREFIX}/stages/test.json"), (w.keys / "release.pub").read_bytes())
    assert index["kind"] == "stage" and index["stage"] == "test"
    assert index["packs"]["lc-basic"]["version"] == "1.0.0" and index["packs"]["lc-basic"]["sha256"] == sha

    test = w.clients["test"]
    wait_version(test, "lc-basic", "1.0.0")
    shows(test, "lc-basic", "1.0.0")
    info = test.agent_info()
    mine = next(p for p in info.packs if p.name == "lc-basic")
    assert (mine.version, mine.sha256, mine.origin) == ("1.0.0", sha, "s3")
    s = info.pack_sync
    assert s.enabled and s.stage == "test" and s.last_error == "" and s.generation >= index["generation"]
    assert s.requests > 0 and s.last_success is not None
    installed = w.agents["test"].data_dir / "installed"
    assert (installed / "packs" / "lc-basic" / "1.0.0" / "pack.toml").exists()
    assert (installed / "state.json").exists()

    now = time.time()
    for stage in ("dev", "prod"):
        wait_attempt(w.clients[stage], now)
        assert versions(w.clients[stage], "lc-basic") == set(), f"the {stage} agent must not install a test release"

    ok(promote(w, "lc-basic", "1.0.0", "prod"))
    wait_version(w.clients["prod"], "lc-basic", "1.0.0")
    shows(w.clients["prod"], "lc-basic", "1.0.0")
    assert stage_index(w, "prod")[0]["packs"]["lc-basic"]["sha256"] == sha


def test_promotion_goes_dev_test_prod_only(world: World) -> None:
    w = world
    ok(publish(w, make_pack(w.root, "lc-promote", "1.0.0"), "dev"))
    wait_version(w.clients["dev"], "lc-promote", "1.0.0")
    prod_before = etag_or_none(w, f"{PREFIX}/stages/prod.json")

    refused(promote(w, "lc-promote", "1.0.0", "prod"), "1.0.0", "test")  # never was in test
    refused(promote(w, "lc-promote", "9.9.9", "test"), "9.9.9")  # never published
    assert promote(w, "lc-promote", "1.0.0", "dev").returncode != 0
    assert publish(w, make_pack(w.root, "lc-promote", "1.0.1"), "prod").returncode != 0, "publish goes to dev or test only"
    assert etag_or_none(w, f"{PREFIX}/stages/prod.json") == prod_before, "a refused promotion leaves prod alone"
    assert etag_or_none(w, f"{PREFIX}/releases/lc-promote/1.0.1.json") is None

    ok(promote(w, "lc-promote", "1.0.0", "test"))
    wait_version(w.clients["test"], "lc-promote", "1.0.0")
    # 1.0.0 is no longer in test, but was: it may still go to prod.
    ok(publish(w, make_pack(w.root, "lc-promote", "2.0.0"), "dev"))
    ok(promote(w, "lc-promote", "2.0.0", "test"))
    wait_version(w.clients["test"], "lc-promote", "2.0.0")
    ok(promote(w, "lc-promote", "1.0.0", "prod"))
    assert stage_index(w, "prod")[0]["packs"]["lc-promote"]["version"] == "1.0.0"
    wait_version(w.clients["prod"], "lc-promote", "1.0.0")


def test_a_version_is_published_once(world: World) -> None:
    w = world
    pack = make_pack(w.root, "lc-once", "1.0.0")
    ok(publish(w, pack, "dev"))
    sha = release(w, "lc-once", "1.0.0")["sha256"]
    archive_key = f"{PREFIX}/archives/lc-once/{sha}.tar.gz"
    before = w.s3.client.head_object(Bucket=BUCKET, Key=archive_key)
    statement = w.s3.get(f"{PREFIX}/releases/lc-once/1.0.0.json")

    ok(publish(w, pack, "dev"))  # identical content: fine, the archive is not rewritten
    ok(publish(w, pack, "test"))
    after = w.s3.client.head_object(Bucket=BUCKET, Key=archive_key)
    assert (after["ETag"], after["LastModified"]) == (before["ETag"], before["LastModified"])
    assert stage_index(w, "test")[0]["packs"]["lc-once"]["sha256"] == sha

    (pack / "show.sh").write_text('#!/bin/sh\necho "version 1.0.0, quietly changed"\n')
    for stage in ("dev", "test"):
        refused(publish(w, pack, stage), "1.0.0")
    assert w.s3.get(f"{PREFIX}/releases/lc-once/1.0.0.json") == statement
    assert w.s3.keys(f"{PREFIX}/archives/lc-once/") == sorted([archive_key, f"{PREFIX}/archives/lc-once/{sha}.json"])
    assert stage_index(w, "dev")[0]["packs"]["lc-once"]["sha256"] == sha


def test_publish_refuses_a_pack_that_fails_lint(world: World) -> None:
    w = world
    pack = make_pack(w.root, "lc-broken", "1.0.0")
    (pack / "show.sh").chmod(0o644)
    refused(publish(w, pack, "dev"), "show.sh")
    assert w.s3.keys(f"{PREFIX}/archives/lc-broken/") == [] and w.s3.keys(f"{PREFIX}/releases/lc-broken/") == []


def test_tampered_archive_is_refused_and_the_last_good_version_serves(world: World) -> None:
    w, test = world, world.clients["test"]
    ok(publish(w, make_pack(w.root, "lc-tamper", "1.0.0"), "test"))
    wait_version(test, "lc-tamper", "1.0.0")

    ok(publish(w, make_pack(w.root, "lc-tamper", "2.0.0"), "dev"))
    sha = tamper(w, "lc-tamper", "2.0.0")
    # The publisher checks the archive against its signed statement before promoting...
    refused(promote(w, "lc-tamper", "2.0.0", "test"), "sha256", "lc-tamper")
    assert stage_index(w, "test")[0]["packs"]["lc-tamper"]["version"] == "1.0.0"
    # ...and agents check it too, should a compromised publisher move the index anyway.
    size = release(w, "lc-tamper", "2.0.0")["size"]
    forge_index(w, "test", "lc-tamper", {"version": "2.0.0", "sha256": sha, "size": size, "targets": None})

    s = wait_error(test, "lc-tamper")
    assert CONTENT_MISMATCH.search(s.last_error), s.last_error
    assert versions(test, "lc-tamper") == {"1.0.0"}
    shows(test, "lc-tamper", "1.0.0")
    assert not (w.agents["test"].data_dir / "installed" / "packs" / "lc-tamper" / "2.0.0").exists()

    ok(publish(w, make_pack(w.root, "lc-tamper", "3.0.0"), "test"))
    wait_version(test, "lc-tamper", "3.0.0")
    wait_clean(test)


def test_index_signed_by_an_untrusted_key_is_refused(world: World) -> None:
    w, test = world, world.clients["test"]
    ok(publish(w, make_pack(w.root, "lc-rogue", "1.0.0"), "test"))
    wait_version(test, "lc-rogue", "1.0.0")
    good, _ = stage_index(w, "test")

    # A publisher never builds on what it cannot verify: the rogue key's
    # holder, not trusting the release key, is refused before writing anything.
    before = w.s3.get(f"{PREFIX}/stages/test.json")
    refused(publish(w, make_pack(w.root, "lc-rogue", "2.0.0"), "test", key="rogue", identity="mallory"), "stages/test.json", w.release_id)
    assert w.s3.get(f"{PREFIX}/stages/test.json") == before
    # With the release key trusted it builds on the index, but signs with its own key: agents refuse it.
    ok(cli(w, "pack", "publish", str(make_pack(w.root, "lc-rogue", "2.0.0")), "--stage", "test", "--key", str(w.keys / "rogue.key"),
           "--identity", "mallory", "--trusted-key", str(w.keys / "release.pub")))
    wait_error(test, w.rogue_id)
    assert versions(test, "lc-rogue") == {"1.0.0"}
    shows(test, "lc-rogue", "1.0.0")

    audit = json.loads(ok(cli(w, "pack", "audit", "--pack", "lc-rogue", "--trusted-key", str(w.keys / "release.pub"), "--json")))
    assert [(r["version"], r["identity"], r["key_id"], r["verified"]) for r in audit] == [
        ("1.0.0", "ci@test", w.release_id, True),
        ("2.0.0", "mallory", w.rogue_id, False),
    ]

    # Put a trusted index back (newer generation, same packs as before).
    rogue, etag = stage_index(w, "test")
    good["generation"] = rogue["generation"] + 1
    body = sign_envelope(good, (w.keys / "release.key").read_bytes())
    w.s3.client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/stages/test.json", Body=body, IfMatch=etag)
    wait_clean(test)
    assert versions(test, "lc-rogue") == {"1.0.0"}


def test_trusted_index_pointing_at_a_missing_archive_is_refused_until_a_good_publish(world: World) -> None:
    w, test = world, world.clients["test"]
    ok(publish(w, make_pack(w.root, "lc-ghost", "1.0.0"), "test"))
    wait_version(test, "lc-ghost", "1.0.0")

    nothing = hashlib.sha256(b"no such archive").hexdigest()
    forge_index(w, "test", "lc-ghost", {"version": "2.0.0", "sha256": nothing, "size": 1234, "targets": None})
    wait_error(test, "lc-ghost")
    assert versions(test, "lc-ghost") == {"1.0.0"}
    shows(test, "lc-ghost", "1.0.0")
    time.sleep(2.5)  # a few more intervals: still failing, still serving 1.0.0
    assert "lc-ghost" in sync_state(test).last_error and versions(test, "lc-ghost") == {"1.0.0"}

    ok(publish(w, make_pack(w.root, "lc-ghost", "3.0.0"), "test"))
    wait_version(test, "lc-ghost", "3.0.0")
    wait_clean(test)
    shows(test, "lc-ghost", "3.0.0")


def test_replayed_older_index_is_refused(world: World) -> None:
    w, test = world, world.clients["test"]
    key = f"{PREFIX}/stages/test.json"
    ok(publish(w, make_pack(w.root, "lc-replay", "1.0.0"), "test"))
    wait_version(test, "lc-replay", "1.0.0")
    old = w.s3.get(key)
    ok(publish(w, make_pack(w.root, "lc-replay", "2.0.0"), "test"))
    wait_version(test, "lc-replay", "2.0.0")
    current = w.s3.get(key)

    w.s3.put(key, old)  # validly signed, but an older generation
    s = wait_error(test, "generation")
    assert s.generation == open_envelope(current)["generation"]
    assert versions(test, "lc-replay") == {"2.0.0"}

    w.s3.put(key, current)
    wait_clean(test)
    assert versions(test, "lc-replay") == {"2.0.0"}


def test_running_execution_finishes_on_its_version(world: World) -> None:
    w, test = world, world.clients["test"]
    ok(publish(w, make_pack(w.root, "lc-slow", "1.0.0"), "test"))
    wait_version(test, "lc-slow", "1.0.0")
    eid = test.execute("lc-slow", "slow").execution_id

    ok(publish(w, make_pack(w.root, "lc-slow", "2.0.0"), "test"))
    wait_version(test, "lc-slow", "2.0.0", timeout=SLOW - 1)
    live = test.get_execution(eid)
    assert live.state is State.RUNNING, "2.0.0 must land while the 1.0.0 execution still runs"
    shows(test, "lc-slow", "2.0.0")

    chunks, end = follow(test, eid)
    assert end is not None
    assert (end.execution.state, end.execution.pack_version) == (State.SUCCEEDED, "1.0.0"), end.execution.error
    assert text(chunks) == "marker 1.0.0\n"


def test_packs_for_other_apps_are_not_installed(world: World) -> None:
    w, test = world, world.clients["test"]
    ok(publish(w, make_pack(w.root, "lc-cassandra", "1.0.0", targets=["cassandra"]), "test"))
    ok(publish(w, make_pack(w.root, "lc-kafka", "1.0.0", targets=["kafka", "zookeeper"]), "test"))
    assert release(w, "lc-cassandra", "1.0.0")["targets"] == ["cassandra"]
    assert stage_index(w, "test")[0]["packs"]["lc-cassandra"]["targets"] == ["cassandra"]

    wait_version(test, "lc-kafka", "1.0.0")  # published after lc-cassandra: that index has been seen
    assert versions(test, "lc-cassandra") == set()
    info = test.agent_info()
    assert "lc-cassandra" not in {p.name for p in info.packs}
    assert info.pack_sync.last_error == "", "a pack for another app is not an error"


def test_dev_build_needs_the_dev_permission(world: World) -> None:
    w = world
    test = w.clients["test"]
    alice = client_for(w.agents["test"], w.certs / "dev-alice.crt", w.certs / "dev-alice.key")
    bob = client_for(w.agents["test"], w.certs / "dev-bob.crt", w.certs / "dev-bob.key")
    ok(publish(w, make_pack(w.root, "lc-devb", "1.0.0"), "dev"))
    sha = release(w, "lc-devb", "1.0.0")["sha256"]

    for build_ in (DevBuild(version="1.0.0"), DevBuild(sha256=sha), DevBuild(version="1.0.0", sha256=sha)):
        e, out = run(alice, "lc-devb", "show", build_)
        assert (e.state, out, e.pack_version, e.caller) == (State.SUCCEEDED, "version 1.0.0\n", "1.0.0", "dev-alice"), e.error
    assert versions(test, "lc-devb") == set(), "a dev build is not installed"

    for who in (bob, test):
        code, _ = code_of(lambda: who.execute("lc-devb", "show", dev_build=DevBuild(version="1.0.0")))
        assert code == grpc.StatusCode.PERMISSION_DENIED

    # A dev build is verified like an installed pack.
    ok(publish(w, make_pack(w.root, "lc-devb", "2.0.0"), "dev"))
    tamper(w, "lc-devb", "2.0.0")
    try:
        e, out = run(alice, "lc-devb", "show", DevBuild(version="2.0.0"))
    except BoltError as refusal:  # refused before it started: as good
        assert CONTENT_MISMATCH.search(refusal.details), refusal
        return
    assert e.state is not State.SUCCEEDED and "hacked" not in out and CONTENT_MISMATCH.search(e.error), (e, out)


def test_audit_lists_every_publish_and_promotion_in_order(world: World) -> None:
    w = world
    ok(publish(w, make_pack(w.root, "lc-audit", "1.0.0"), "dev", identity="alice@laptop"))
    ok(promote(w, "lc-audit", "1.0.0", "test", identity="bob@ci"))
    ok(promote(w, "lc-audit", "1.0.0", "prod", identity="carol@ci"))
    sha = release(w, "lc-audit", "1.0.0")["sha256"]

    out = ok(cli(w, "pack", "audit", "--pack", "lc-audit", "--trusted-key", str(w.keys / "release.pub"), "--json"))
    records = json.loads(out)
    assert [(r["event"], r["stage"], r["from_stage"] or None, r["identity"]) for r in records] == [
        ("publish", "dev", None, "alice@laptop"),
        ("promote", "test", "dev", "bob@ci"),
        ("promote", "prod", "test", "carol@ci"),
    ]
    for r in records:
        assert (r["pack"], r["version"], r["sha256"], r["key_id"], r["verified"]) == ("lc-audit", "1.0.0", sha, w.release_id, True)
    times = [datetime.fromisoformat(r["at"]) for r in records]
    assert times == sorted(times)

    human = ok(cli(w, "pack", "audit", "--pack", "lc-audit"))
    assert all(who in human for who in ("alice@laptop", "bob@ci", "carol@ci"))

    # The records themselves: signed audit payloads, one object each.
    mine = []
    for key in w.s3.keys(f"{PREFIX}/audit/"):
        payload = open_envelope(w.s3.get(key))
        if payload["pack"] == "lc-audit":
            mine.append(open_envelope(w.s3.get(key), (w.keys / "release.pub").read_bytes()))
    mine.sort(key=lambda p: datetime.fromisoformat(p["at"]))
    assert [(p["kind"], p["event"], p["identity"], p["key_id"]) for p in mine] == [
        ("audit", "publish", "alice@laptop", w.release_id),
        ("audit", "promote", "bob@ci", w.release_id),
        ("audit", "promote", "carol@ci", w.release_id),
    ]
    assert all(p["host"] for p in mine)


def test_list_shows_what_each_stage_points_to(world: World) -> None:
    w = world
    ok(publish(w, make_pack(w.root, "lc-list", "1.0.0", targets=["kafka"]), "dev"))
    ok(promote(w, "lc-list", "1.0.0", "test"))
    ok(publish(w, make_pack(w.root, "lc-list", "2.0.0", targets=["kafka"]), "dev"))
    generation = {stage: stage_index(w, stage)[0]["generation"] for stage in ("dev", "test")}

    fields = ("stage", "pack", "version", "sha256", "targets", "generation")
    rows = [{k: r[k] for k in fields} for r in json.loads(ok(cli(w, "pack", "list", "--json"))) if r["pack"] == "lc-list"]
    assert rows == [
        {"stage": "dev", "pack": "lc-list", "version": "2.0.0", "sha256": release(w, "lc-list", "2.0.0")["sha256"],
         "targets": ["kafka"], "generation": generation["dev"]},
        {"stage": "test", "pack": "lc-list", "version": "1.0.0", "sha256": release(w, "lc-list", "1.0.0")["sha256"],
         "targets": ["kafka"], "generation": generation["test"]},
    ]
    only_test = json.loads(ok(cli(w, "pack", "list", "--stage", "test", "--json")))
    assert {r["stage"] for r in only_test} == {"test"}
    assert [r["version"] for r in only_test if r["pack"] == "lc-list"] == ["1.0.0"]
    assert "lc-list" in ok(cli(w, "pack", "list"))


SIX = '#!/usr/bin/env python3\nimport os, six\nprint(six.__version__)\nprint(os.environ.get("VIRTUAL_ENV", ""))\nprint(os.environ["PATH"].split(":")[0])\n'


def test_each_pack_runs_in_its_own_virtualenv(world: World) -> None:
    w, test = world, world.clients["test"]
    pins = {"lc-six-new": "six==1.16.0\n", "lc-six-old": "six==1.15.0\n", "lc-six-same": "six==1.16.0\n"}
    for name, requirements in pins.items():
        pack = make_pack(w.root, name, "1.0.0", files={"which_six.py": SIX, "requirements.txt": requirements}, actions={"six": "which_six.py"})
        ok(publish(w, pack, "test"))
    venvs: dict[str, str] = {}
    for name, requirements in pins.items():
        wait_version(test, name, "1.0.0", timeout=120)  # pip runs first
        e, out = run(test, name, "six")
        assert e.state is State.SUCCEEDED, (e.error, output(test, e.execution_id))
        version, venv, first_path = out.splitlines()
        assert version == requirements.split("==")[1].strip()
        # sync.dir/venvs/HASH; HASH may be a prefix of the sha256 (shebang lines are short).
        digest = hashlib.sha256(requirements.encode()).hexdigest()
        folder = Path(venv)
        assert folder.parent.resolve() == (w.agents["test"].data_dir / "installed" / "venvs").resolve(), venv
        assert len(folder.name) >= 16 and digest.startswith(folder.name), venv
        assert first_path == f"{venv}/bin" and (folder / ".bolt-ready").exists()
        venvs[name] = venv
    assert venvs["lc-six-new"] == venvs["lc-six-same"] != venvs["lc-six-old"], "the same requirements.txt shares a venv"


# --- the publisher trusts nothing it reads from the bucket (hardening, round 2) -----------


def cli_at(w: World, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`cli` under another prefix, which no agent follows."""
    s3 = ["--bucket", BUCKET, "--prefix", prefix, "--endpoint", w.s3.endpoint, "--region", "us-east-1", "--path-style"]
    return subprocess.run(
        [str(agent_bin()), *args, *s3], capture_output=True, text=True, timeout=120, env={**os.environ, **w.s3.env}
    )


def publish_at(w: World, prefix: str, pack: Path, stage: str) -> subprocess.CompletedProcess[str]:
    """`publish` under another prefix, with the trusted key."""
    return cli_at(w, prefix, "pack", "publish", str(pack), "--stage", stage, "--key", str(w.keys / "release.key"))


def unsigned(payload: dict[str, Any], key_id_: str) -> bytes:
    """An envelope that names a trusted key but carries no valid signature."""
    return json.dumps({"payload": json.dumps(payload), "key_id": key_id_, "signature": "AAAA"}).encode()


def upload_archive(w: World, pack: Path) -> tuple[str, int]:
    """A well-formed archive of `pack` put straight into the bucket, as an
    attacker with write access could; returns its sha256 and size."""
    sha, path = build(pack, w.root / "attacker")
    body = path.read_bytes()
    w.s3.put(f"{PREFIX}/archives/{pack.name}/{sha}.tar.gz", body)
    return sha, len(body)


def test_publish_refuses_a_planted_index_and_never_ships_its_backdoor(world: World) -> None:
    w, test = world, world.clients["test"]
    ok(publish(w, make_pack(w.root, "lc-victim", "1.0.0"), "test"))
    wait_version(test, "lc-victim", "1.0.0")
    key = f"{PREFIX}/stages/test.json"
    good = w.s3.get(key)

    sha, size = upload_archive(w, make_pack(w.root, "backdoor", "6.6.6"))
    planted = open_envelope(good)
    planted["packs"]["backdoor"] = {"version": "6.6.6", "sha256": sha, "size": size, "targets": None}
    planted["generation"] += 1
    rogue_signed = sign_envelope(planted, (w.keys / "rogue.key").read_bytes())
    for forged, why in ((unsigned(planted, w.release_id), w.release_id), (rogue_signed, w.rogue_id)):
        w.s3.put(key, forged)
        # The next ordinary publish refuses to re-sign what it cannot verify.
        stderr = refused(publish(w, make_pack(w.root, "lc-victim", "1.0.1"), "test"), "stages/test.json", why)
        assert "--trusted-key" in stderr
        assert w.s3.get(key) == forged, "a refused publish writes no index"
        assert etag_or_none(w, f"{PREFIX}/releases/lc-victim/1.0.1.json") is None, "nor anything else"
    wait_error(test, "stages/test.json")
    assert versions(test, "backdoor") == set()

    w.s3.put(key, good)  # restored from a trusted copy: publishing works again
    ok(publish(w, make_pack(w.root, "lc-victim", "1.0.2"), "test"))
    wait_version(test, "lc-victim", "1.0.2")
    wait_clean(test)
    assert "backdoor" not in stage_index(w, "test")[0]["packs"]
    assert versions(test, "backdoor") == set()


def test_promote_trusts_no_forged_audit_record_or_release_statement(world: World) -> None:
    w = world
    ok(publish(w, make_pack(w.root, "lc-skip", "1.0.0"), "dev"))
    rel = release(w, "lc-skip", "1.0.0")
    # Forged audit records claim 1.0.0 went through test: one signed by the
    # rogue key, one naming the release key without its signature.
    record = {"kind": "audit", "event": "promote", "pack": "lc-skip", "version": "1.0.0", "sha256": rel["sha256"],
              "stage": "test", "from_stage": "dev", "identity": "ci@test", "key_id": w.release_id, "host": "x",
              "at": "2026-01-01T00:00:00.000Z"}
    w.s3.put(f"{PREFIX}/audit/2026-01-01T000000.000Z-forged1.json", sign_envelope(record, (w.keys / "rogue.key").read_bytes()))
    w.s3.put(f"{PREFIX}/audit/2026-01-01T000000.000Z-forged2.json", unsigned(record, w.release_id))
    w.s3.put(f"{PREFIX}/audit/2026-01-01T000000.000Z-garbage.json", b"not json at all")
    prod_before = etag_or_none(w, f"{PREFIX}/stages/prod.json")
    refused(promote(w, "lc-skip", "1.0.0", "prod"), "lc-skip", "test")
    assert etag_or_none(w, f"{PREFIX}/stages/prod.json") == prod_before
    # The audit listing shows them as what they are, and skips the garbage with a warning.
    p = cli(w, "pack", "audit", "--pack", "lc-skip", "--trusted-key", str(w.keys / "release.pub"), "--json")
    rows = json.loads(ok(p))
    assert sorted(r["verified"] for r in rows) == [False, False, True]
    assert "garbage" in p.stderr

    # A release statement replaced by one of the rogue key, naming an evil archive.
    ok(publish(w, make_pack(w.root, "lc-swap", "1.0.0"), "dev"))
    evil_sha, evil_size = upload_archive(w, make_pack(w.root, "lc-swap", "1.0.0"))
    forged = {**release(w, "lc-swap", "1.0.0"), "sha256": evil_sha, "size": evil_size}
    w.s3.put(f"{PREFIX}/releases/lc-swap/1.0.0.json", sign_envelope(forged, (w.keys / "rogue.key").read_bytes()))
    refused(promote(w, "lc-swap", "1.0.0", "test"), "releases/lc-swap/1.0.0.json", w.rogue_id)
    w.s3.put(f"{PREFIX}/releases/lc-swap/1.0.0.json", unsigned(forged, w.release_id))
    refused(promote(w, "lc-swap", "1.0.0", "test"), "releases/lc-swap/1.0.0.json")
    assert "lc-swap" not in stage_index(w, "test")[0]["packs"]


def test_a_deleted_stage_index_is_rebuilt_from_the_audit_trail(world: World) -> None:
    w, test = world, world.clients["test"]
    ok(publish(w, make_pack(w.root, "lc-keep", "1.0.0"), "test"))
    ok(publish(w, make_pack(w.root, "lc-next", "1.0.0"), "test"))
    wait_version(test, "lc-next", "1.0.0")
    wait_version(test, "lc-keep", "1.0.0")
    before = stage_index(w, "test")[0]
    held = sync_state(test).generation

    w.s3.client.delete_object(Bucket=BUCKET, Key=f"{PREFIX}/stages/test.json")
    ok(publish(w, make_pack(w.root, "lc-next", "2.0.0"), "test"))
    after = open_envelope(w.s3.get(f"{PREFIX}/stages/test.json"), (w.keys / "release.pub").read_bytes())
    assert after["generation"] > max(before["generation"], held), "agents must take the new index"
    assert after["packs"]["lc-keep"] == before["packs"]["lc-keep"], "packs of the stage are kept"
    assert after["packs"]["lc-next"]["version"] == "2.0.0"
    wait_version(test, "lc-next", "2.0.0")
    wait_clean(test)
    assert versions(test, "lc-keep") == {"1.0.0"}
    shows(test, "lc-next", "2.0.0")


def test_a_generation_at_its_limit_is_refused_not_wrapped(world: World) -> None:
    w = world
    prefix = "limits"
    ok(publish_at(w, prefix, make_pack(w.root, "lc-wrap", "1.0.0"), "dev"))
    key = f"{prefix}/stages/dev.json"
    index = open_envelope(w.s3.get(key))
    index["generation"] = 2**64 - 1
    w.s3.put(key, sign_envelope(index, (w.keys / "release.key").read_bytes()))
    p = publish_at(w, prefix, make_pack(w.root, "lc-wrap", "1.0.1"), "dev")
    refused(p, "generation", str(2**64 - 1))
    assert open_envelope(w.s3.get(key))["generation"] == 2**64 - 1
    # A generation beyond 64 bits is not an index this publisher builds on either.
    w.s3.put(key, w.s3.get(key).replace(b'\\"generation\\":18446744073709551615', b'\\"generation\\":1000000000000000000000000000000'))
    refused(publish_at(w, prefix, make_pack(w.root, "lc-wrap", "1.0.2"), "dev"), "stages/dev.json")



# --- the agents' side, hardened (round 2) --------------------------------------------------


def side_agent(w: World, name: str, prefix: str, sync_extra: str = "") -> Agent:
    """An agent of stage test, app kafka, following `prefix` (no other agent does)."""
    config = agent_config("test", w.s3, w.keys / "release.pub", prefix, sync_extra)
    return Agent(w.root / name, packs=[], config=config, certs=w.certs, env=w.s3.env).start()


def test_a_version_is_never_swapped_under_its_name(world: World) -> None:
    w, test = world, world.clients["test"]
    ok(publish(w, make_pack(w.root, "lc-same", "1.0.0"), "test"))
    wait_version(test, "lc-same", "1.0.0")
    eid = test.execute("lc-same", "slow").execution_id
    installed = w.agents["test"].data_dir / "installed" / "packs" / "lc-same" / "1.0.0"
    marker = (installed / "marker.txt").read_text()

    # Other bytes under the same version, in a validly signed index.
    other = make_pack(w.root, "lc-same", "1.0.0", files={"extra.txt": "other bytes\n"})
    sha, size = upload_archive(w, other)
    forge_index(w, "test", "lc-same", {"version": "1.0.0", "sha256": sha, "size": size, "targets": None})
    s = wait_error(test, "lc-same")
    assert "same version" in s.last_error and "publish a new version" in s.last_error, s.last_error
    assert (installed / "marker.txt").read_text() == marker and not (installed / "extra.txt").exists()
    chunks, end = follow(test, eid)
    assert end is not None and end.execution.state is State.SUCCEEDED and text(chunks) == marker

    ok(publish(w, make_pack(w.root, "lc-same", "1.0.1"), "test"))
    wait_version(test, "lc-same", "1.0.1")
    wait_clean(test)


def test_many_broken_entries_make_a_bounded_error(world: World) -> None:
    w = world
    prefix = "bulk"
    ok(publish_at(w, prefix, make_pack(w.root, "lc-bulk", "1.0.0"), "test"))
    key = f"{prefix}/stages/test.json"
    index = open_envelope(w.s3.get(key))
    for i in range(2000):
        index["packs"][f"lc-broken-{i}"] = {"version": "1.0.0", "sha256": hashlib.sha256(str(i).encode()).hexdigest(), "size": 10, "targets": None}
    index["generation"] += 1
    w.s3.put(key, sign_envelope(index, (w.keys / "release.key").read_bytes()))
    a = side_agent(w, "agent-bulk", prefix)
    try:
        client = client_for(a)
        wait_version(client, "lc-bulk", "1.0.0", timeout=60)
        s = wait_until(lambda: sync_state(client) if "more failures" in sync_state(client).last_error else None, 60, "the failures")
        assert len(s.last_error) < 2000, len(s.last_error)
        health = client.health()
        assert sum(len(p) for p in health.problems) < 4000
        raw = stub_for(a).GetAgentInfo(pb.GetAgentInfoRequest(), timeout=5)  # its size on the wire
        assert len(raw.SerializeToString()) < 64 * 1024
        assert a.log().count("pack sync failed") < 100
    finally:
        a.stop()


BACKEND = '''import os, subprocess, time, zipfile, base64, hashlib
MARK = "@MARK@"
def _record(what):
    with open(os.path.join(MARK, what), "w") as f:
        f.write(str(os.getuid()))
def get_requires_for_build_wheel(config_settings=None):
    return []
def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    return _dist_info(metadata_directory)
def _dist_info(where):
    d = os.path.join(where, "@NAME@-1.0.dist-info")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "METADATA"), "w") as f:
        f.write("Metadata-Version: 2.1\\nName: @NAME@\\nVersion: 1.0\\n")
    with open(os.path.join(d, "WHEEL"), "w") as f:
        f.write("Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n")
    return os.path.basename(d)
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _record("uid-@NAME@")
    if "@HANG@" == "yes":
        subprocess.Popen(["sleep", "@SLEEPER@"])
        time.sleep(3600)
    name = "@NAME@-1.0-py3-none-any.whl"
    files = {"@NAME@/__init__.py": b"VALUE = 1\\n",
             "@NAME@-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\\nName: @NAME@\\nVersion: 1.0\\n",
             "@NAME@-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"}
    record = []
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{path},sha256={digest},{len(data)}")
        record.append("@NAME@-1.0.dist-info/RECORD,,")
        z.writestr("@NAME@-1.0.dist-info/RECORD", "\\n".join(record) + "\\n")
    return name
'''


def source_package(root: Path, name: str, mark: Path, hang: bool, sleeper: str) -> Path:
    """A source package whose in-tree build backend (the pack author's code
    that pip runs) records the uid it runs as, and, with `hang`, starts a
    child and never finishes."""
    d = root / f"src-{name}"
    d.mkdir()
    (d / "pyproject.toml").write_text(f'[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n[project]\nname = "{name}"\nversion = "1.0"\n')
    code = BACKEND.replace("@MARK@", str(mark)).replace("@NAME@", name).replace("@HANG@", "yes" if hang else "no").replace("@SLEEPER@", sleeper)
    (d / "backend.py").write_text(code)
    for p in [d, *d.iterdir()]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return d


def let_others_through(path: Path) -> None:
    """o+x on `path` and every folder above it, as on a real host's /var/lib."""
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if not mode & 0o001:
            p.chmod(mode | 0o001)


def test_builds_run_unprivileged_and_a_hung_one_delays_nothing_and_leaves_nothing(world: World) -> None:
    w = world
    prefix = "builds"
    root = w.root / "builds"
    root.mkdir()
    mark = root / "marks"
    mark.mkdir()
    mark.chmod(0o777)
    let_others_through(root)
    sleeper = "1001.25"
    hang_src = source_package(root, "hangpkg", mark, hang=True, sleeper=sleeper)
    fine_src = source_package(root, "finepkg", mark, hang=False, sleeper=sleeper)
    for name, src in (("lc-hang", hang_src), ("lc-fine", fine_src)):
        pack = make_pack(root, name, "1.0.0", files={"requirements.txt": f"--no-index\n{src.name.removeprefix('src-')} @ file://{src}\n"})
        ok(publish_at(w, prefix, pack, "test"))
    ok(publish_at(w, prefix, make_pack(root, "lc-plain", "1.0.0"), "test"))

    a = Agent(root / "agent", packs=[], certs=w.certs, env=w.s3.env,
              config=agent_config("test", w.s3, w.keys / "release.pub", prefix, 'pip_timeout = "30s"'))
    let_others_through(a.root)
    a.start()
    try:
        client = client_for(a)
        wait_version(client, "lc-plain", "1.0.0", timeout=30)
        wait_version(client, "lc-fine", "1.0.0", timeout=90)
        # Installed while the hung build still runs (it is ended at pip_timeout,
        # 30 s, generous for `python3 -m venv` on a busy machine).
        assert "lc-hang" not in sync_state(client).last_error, "the hung build held the others back"
        if os.geteuid() == 0:
            nobody = int(subprocess.run(["id", "-u", "nobody"], capture_output=True, text=True, check=True).stdout)
            assert (mark / "uid-finepkg").read_text() == str(nobody), "pip ran the build backend as root"
            venv = next(v for v in (a.data_dir / "installed" / "venvs").iterdir() if (v / ".bolt-ready").exists())
            assert venv.stat().st_uid == 0 and not venv.stat().st_mode & 0o022, "the builder's folder was taken back"
        e, out = run(client, "lc-fine", "show")
        assert e.state is State.SUCCEEDED

        # The hung build is ended at the timeout with every process it started.
        wait_until(lambda: (mark / "uid-hangpkg").exists(), 30, "the hung build to start")
        s = wait_until(lambda: sync_state(client) if "lc-hang" in sync_state(client).last_error else None, 90, "the timeout")
        assert "longer than" in s.last_error, s.last_error
        wait_until(lambda: not sleepers(sleeper), 10, "the build's processes to be gone")
        assert versions(client, "lc-hang") == set()
    finally:
        a.stop()
    assert not sleepers(sleeper)


def sleepers(arg: str) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", arg.encode()]:
                    out.append(int(d.name))
            except OSError:
                continue
    return out


# --- index expiry --------------------------------------------------------------------------


def resign(w: World, prefix: str, stage: str, **changes: Any) -> dict[str, Any]:
    """Re-sign the stage index under `prefix` with the trusted key after
    `changes` (a field set to None is removed), as the holder of an old
    signed index, or of the key, could write it; returns the payload."""
    key = f"{prefix}/stages/{stage}.json"
    index = open_envelope(w.s3.get(key))
    for field, value in changes.items():
        if value is None:
            index.pop(field, None)
        else:
            index[field] = value
    w.s3.put(key, sign_envelope(index, (w.keys / "release.key").read_bytes()))
    return index


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_publish_signs_an_expiry_and_refresh_renews_it_changing_nothing_else(world: World) -> None:
    w, prefix = world, "expiry-cli"
    ok(cli_at(w, prefix, "pack", "publish", str(make_pack(w.root, "lc-exp", "1.0.0")), "--stage", "dev",
              "--key", str(w.keys / "release.key"), "--index-valid-for", "2h"))
    first = open_envelope(w.s3.get(f"{prefix}/stages/dev.json"), (w.keys / "release.pub").read_bytes())
    expires = datetime.fromisoformat(first["expires_at"].replace("Z", "+00:00")).timestamp()
    assert abs(expires - (time.time() + 7200)) < 120, first["expires_at"]

    out = ok(cli_at(w, prefix, "pack", "refresh", "--stage", "dev", "--key", str(w.keys / "release.key"),
                    "--index-valid-for", "40d"))
    second = open_envelope(w.s3.get(f"{prefix}/stages/dev.json"), (w.keys / "release.pub").read_bytes())
    assert second["expires_at"] in out
    assert second["generation"] > first["generation"] and second["packs"] == first["packs"]
    expires = datetime.fromisoformat(second["expires_at"].replace("Z", "+00:00")).timestamp()
    assert abs(expires - (time.time() + 40 * 86400)) < 120

    rows = json.loads(ok(cli_at(w, prefix, "pack", "list", "--stage", "dev", "--json")))
    assert [(r["pack"], r["expires_at"]) for r in rows] == [("lc-exp", second["expires_at"])]
    refused(cli_at(w, prefix, "pack", "refresh", "--stage", "dev", "--key", str(w.keys / "release.key"),
                   "--index-valid-for", "10s"), "too short")
    refused(cli_at(w, prefix, "pack", "refresh", "--stage", "dev", "--key", str(w.keys / "release.key"),
                   "--index-valid-for", "soon"), "--index-valid-for")

    # Refresh re-signs only what it can verify, like publish.
    before = w.s3.get(f"{prefix}/stages/dev.json")
    refused(cli_at(w, prefix, "pack", "refresh", "--stage", "dev", "--key", str(w.keys / "rogue.key")),
            "stages/dev.json", w.release_id)
    assert w.s3.get(f"{prefix}/stages/dev.json") == before


@pytest.mark.parametrize("stale", ["expired", "no-expiry"])
def test_a_new_agent_refuses_an_old_signed_index_until_it_is_refreshed(world: World, stale: str) -> None:
    w, prefix = world, f"expiry-new-{stale}"
    ok(publish_at(w, prefix, make_pack(w.root, f"lc-old-{stale}", "1.0.0"), "test"))
    # What a replay of an index signed long ago looks like: valid signature, past its expiry
    # (or from before expiry existed).
    resign(w, prefix, "test", expires_at=rfc3339(time.time() - 3600) if stale == "expired" else None)
    a = side_agent(w, f"agent-{stale}", prefix)
    try:
        client = client_for(a)
        s = wait_error(client, "expire" if stale == "expired" else "no expiry")
        assert "pack refresh --stage test" in s.last_error and s.generation == 0
        assert versions(client, f"lc-old-{stale}") == set()

        ok(cli_at(w, prefix, "pack", "refresh", "--stage", "test", "--key", str(w.keys / "release.key")))
        wait_version(client, f"lc-old-{stale}", "1.0.0")
        wait_clean(client)
        assert sync_state(client).index_expires_at.timestamp() > time.time() + 29 * 86400
    finally:
        a.stop()


def test_an_index_that_expires_in_use_is_reported_and_its_packs_keep_serving(world: World) -> None:
    w, prefix = world, "expiry-in-use"
    ok(publish_at(w, prefix, make_pack(w.root, "lc-ttl", "1.0.0"), "test"))
    soon = time.time() + 4
    resign(w, prefix, "test", expires_at=rfc3339(soon))
    a = side_agent(w, "agent-ttl", prefix)
    try:
        client = client_for(a)
        wait_version(client, "lc-ttl", "1.0.0")
        assert int(sync_state(client).index_expires_at.timestamp()) == int(soon)
        # Nothing changes in the bucket (the agent gets 304s), and still the expiry is noticed.
        s = wait_error(client, "expired at")
        assert s.generation > 0
        shows(client, "lc-ttl", "1.0.0")

        ok(cli_at(w, prefix, "pack", "refresh", "--stage", "test", "--key", str(w.keys / "release.key")))
        wait_clean(client)
        shows(client, "lc-ttl", "1.0.0")
    finally:
        a.stop()
