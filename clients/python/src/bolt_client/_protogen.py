"""Generate the Python gRPC stubs from bolt.proto (used by setup.py and the staleness test).

Only the standard library is imported at module level so that setup.py can load
this file before the package is installed.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

PROTO_FILE = "bolt/v1/bolt.proto"
GENERATED = ("bolt_pb2.py", "bolt_pb2.pyi", "bolt_pb2_grpc.py")


def generate(proto_root: Path, out_dir: Path) -> list[Path]:
    """Run grpc_tools.protoc on ``proto_root/bolt/v1/bolt.proto`` into ``out_dir`` (flat)."""
    import grpc_tools  # type: ignore[import-untyped]
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).resolve().parent / "_proto"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        code = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{proto_root}",
                f"-I{include}",
                f"--python_out={tmp}",
                f"--pyi_out={tmp}",
                f"--grpc_python_out={tmp}",
                str(proto_root / PROTO_FILE),
            ]
        )
        if code != 0:
            raise RuntimeError(f"protoc failed with exit code {code} on {proto_root / PROTO_FILE}")
        written = []
        for name in GENERATED:
            text = (Path(tmp) / "bolt" / "v1" / name).read_text()
            # The generated gRPC module imports its messages as a top-level
            # package `bolt.v1`; inside bolt_client they are a sibling module.
            text = re.sub(r"^from bolt\.v1 import ", "from . import ", text, flags=re.M)
            dest = out_dir / name
            dest.write_text(text)
            written.append(dest)
    return written


def regenerate_to_temp(proto_root: Path) -> Path:
    """Generate into a fresh temporary folder (the caller removes it)."""
    tmp = Path(tempfile.mkdtemp(prefix="bolt-protogen-"))
    try:
        generate(proto_root, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp
