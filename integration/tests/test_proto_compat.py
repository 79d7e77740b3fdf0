"""The bolt.v1 compatibility policy (docs/api-compatibility.md), checked by buf's
breaking-change rules (category FILE) of proto/ against proto-released/, the
proto of the last release, and shown not to be blind: each kind of breaking
change, made to a copy, fails the check; an added field does not."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bolt_testing import REPO

BUF = os.environ.get("BUF") or shutil.which("buf") or ""
PROTO = REPO / "proto"
RELEASED = REPO / "proto-released"
CURRENT = PROTO / "bolt" / "v1" / "bolt.proto"


def buf_breaking(module: Path) -> subprocess.CompletedProcess[str]:
    if not BUF or not Path(BUF).exists():
        pytest.skip("buf is not installed (`make tools` installs it with npm): skipping the proto compatibility check")
    return subprocess.run(
        [BUF, "breaking", str(module), "--against", str(RELEASED)], capture_output=True, text=True, timeout=120
    )


def copy_with(tmp: Path, old: str, new: str) -> Path:
    text = CURRENT.read_text()
    assert old in text, f"the proto no longer has {old!r}: pick another line for this case"
    module = tmp / "proto"
    (module / "bolt" / "v1").mkdir(parents=True)
    shutil.copy(PROTO / "buf.yaml", module / "buf.yaml")
    (module / "bolt" / "v1" / "bolt.proto").write_text(text.replace(old, new, 1))
    return module


def test_the_proto_keeps_the_released_contract() -> None:
    r = buf_breaking(PROTO)
    assert r.returncode == 0, f"bolt.v1 breaks the last release (docs/api-compatibility.md):\n{r.stdout}{r.stderr}"


@pytest.mark.parametrize(
    "old,new,words",
    [
        ("  optional int32 exit_code = 5;\n", "", "deleted"),
        ("  optional int32 exit_code = 5;", "  optional int32 exit_code = 55;", "exit_code"),
        ("  optional int32 exit_code = 5;", "  optional int64 exit_code = 5;", "type"),
        ("  rpc Kill(", "  rpc Stop(", "Kill"),
        ('option java_package = "io.bolt.v1";', 'option java_package = "io.bolt.api";', "java_package"),
    ],
    ids=["field removed", "field renumbered", "field type changed", "method renamed", "java package changed"],
)
def test_each_kind_of_breaking_change_is_caught(tmp_path: Path, old: str, new: str, words: str) -> None:
    r = buf_breaking(copy_with(tmp_path, old, new))
    assert r.returncode != 0, f"buf did not see a breaking change ({old!r} -> {new!r})"
    assert words in r.stdout + r.stderr, r.stdout + r.stderr


def test_an_added_field_is_compatible(tmp_path: Path) -> None:
    r = buf_breaking(copy_with(tmp_path, "  optional int32 exit_code = 5;",
                               "  optional int32 exit_code = 5;\n  string added_for_the_test = 9999;"))
    assert r.returncode == 0, r.stdout + r.stderr
