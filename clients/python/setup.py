"""Build hook: generate the gRPC stubs from bolt.proto.

``build_py`` (which pip runs for regular and editable installs and for wheels)
calls grpcio-tools' protoc on ``bolt/v1/bolt.proto`` found in ``BOLT_PROTO_DIR``,
else the repository's ``../../proto``, else the copy an sdist carries in
``proto/``, and writes ``bolt_pb2.py``, ``bolt_pb2.pyi`` and ``bolt_pb2_grpc.py``
into ``src/bolt_client/_proto/``. ``sdist`` copies the proto into ``proto/`` and
ships the generated stubs too, so ``python -m build`` (which builds the wheel from
the unpacked sdist, away from the repository) and ``pip install`` of the sdist
work. The generated files are git-ignored and never edited by hand;
``tests/test_proto_fresh.py`` fails when they are stale against the proto.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "src" / "bolt_client"))
from _protogen import PROTO_FILE, generate  # noqa: E402  (stdlib-only module, shared with the tests)

sys.path.pop(0)

STUBS = HERE / "src" / "bolt_client" / "_proto"
SDIST_PROTO = HERE / "proto"


def proto_dir() -> Path | None:
    for cand in (os.environ.get("BOLT_PROTO_DIR"), HERE.parent.parent / "proto", SDIST_PROTO):
        if cand and (Path(cand) / PROTO_FILE).is_file():
            return Path(cand)
    return None


def generate_stubs() -> Path | None:
    src = proto_dir()
    if src is not None:
        generate(src, STUBS)
    elif not (STUBS / "bolt_pb2.py").exists():
        raise SystemExit(f"bolt-client: {PROTO_FILE} not found in BOLT_PROTO_DIR, ../../proto or ./proto")
    return src


class BuildWithStubs(build_py):
    def run(self) -> None:
        generate_stubs()
        super().run()


class SdistWithProto(sdist):
    def run(self) -> None:
        src = generate_stubs()
        if src is not None and src.resolve() != SDIST_PROTO.resolve():
            dest = SDIST_PROTO / PROTO_FILE
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / PROTO_FILE, dest)
        super().run()


setup(cmdclass={"build_py": BuildWithStubs, "sdist": SdistWithProto})
