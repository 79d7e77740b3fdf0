"""Build hook: generate the gRPC stubs from the repository's proto/ folder.

``build_py`` (which pip runs for both regular and editable installs) calls
grpcio-tools' protoc on ``../../proto/bolt/v1/bolt.proto`` (``BOLT_PROTO_DIR``
overrides the folder) and writes ``bolt_pb2.py``, ``bolt_pb2.pyi`` and
``bolt_pb2_grpc.py`` into ``src/bolt_client/_proto/``. The generated files are
git-ignored and never edited by hand; ``tests/test_proto_fresh.py`` fails when
they are stale against the proto.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "src" / "bolt_client"))
from _protogen import generate  # noqa: E402  (stdlib-only module, shared with the tests)

sys.path.pop(0)


def proto_dir() -> Path:
    return Path(os.environ.get("BOLT_PROTO_DIR") or HERE.parent.parent / "proto")


class BuildWithStubs(build_py):
    def run(self) -> None:
        out = HERE / "src" / "bolt_client" / "_proto"
        src = proto_dir()
        if (src / "bolt" / "v1" / "bolt.proto").exists():
            generate(src, out)
        elif not (out / "bolt_pb2.py").exists():
            raise SystemExit(f"bolt-client: proto not found at {src} (set BOLT_PROTO_DIR)")
        super().run()


setup(cmdclass={"build_py": BuildWithStubs})
