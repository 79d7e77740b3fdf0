"""`python -m build` from a clean copy of the sources, as a user or a release job
runs it: the sdist carries the proto and the generated stubs, the wheel builds
from the sdist alone (away from the repository) and installs into a fresh
virtualenv, where `bolt --version` and the import work without the `ec2` extra."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent  # clients/python
REPO = HERE.parent.parent
IGNORED = shutil.ignore_patterns(
    "build", "dist", "*.egg-info", "__pycache__", ".mypy_cache", ".pytest_cache", "proto", "bolt_pb2*"
)


def test_build_sdist_and_wheel_from_a_clean_copy_then_install(tmp_path: Path) -> None:
    # The layout of a fresh clone: clients/python beside proto/, no generated stubs.
    src = tmp_path / "clone"
    shutil.copytree(HERE, src / "clients" / "python", ignore=IGNORED)
    shutil.copytree(REPO / "proto", src / "proto")
    dist = tmp_path / "dist"
    b = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(src / "clients" / "python")],
        capture_output=True, text=True, timeout=600,
    )
    assert b.returncode == 0, b.stdout[-3000:] + b.stderr[-3000:]
    sdist = next(dist.glob("bolt_client-*.tar.gz"))
    wheel = next(dist.glob("bolt_client-*.whl"))

    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    assert {"proto/bolt/v1/bolt.proto", "src/bolt_client/_proto/bolt_pb2.py",
            "src/bolt_client/_proto/bolt_pb2_grpc.py", "src/bolt_client/py.typed"} <= names
    assert not any(n.startswith("tests/") for n in names)
    with zipfile.ZipFile(wheel) as z:
        wnames = set(z.namelist())
    assert {"bolt_client/_proto/bolt_pb2.py", "bolt_client/_proto/bolt_pb2.pyi", "bolt_client/py.typed"} <= wnames
    meta = next(n for n in wnames if n.endswith(".dist-info/METADATA"))
    with zipfile.ZipFile(wheel) as z:
        requires = [ln for ln in z.read(meta).decode().splitlines() if ln.startswith("Requires-Dist:")]
    assert any("boto3" in r and "extra == \"ec2\"" in r for r in requires), requires

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        capture_output=True, text=True, timeout=600,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    v = subprocess.run([str(venv / "bin" / "bolt"), "--version"], capture_output=True, text=True, timeout=60)
    assert v.returncode == 0 and v.stdout.strip().startswith("bolt "), v.stdout + v.stderr
    imp = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import bolt_client, importlib.util as u; print(bolt_client.__version__, u.find_spec('boto3') is None)"],
        capture_output=True, text=True, timeout=60,
    )
    assert imp.returncode == 0 and imp.stdout.split() == [bolt_client_version(), "True"], imp.stdout + imp.stderr
    # Without the ec2 extra, the EC2 inventory says what to install instead of an ImportError.
    ec2 = subprocess.run(
        [str(venv / "bin" / "bolt"), "--ca", "x", "--cert", "x", "--key", "x", "fleet", "health",
         "-i", "ec2:region=us-east-1,tag:app=x"],
        capture_output=True, text=True, timeout=60,
    )
    assert ec2.returncode == 2 and "bolt-client[ec2]" in ec2.stderr and "Traceback" not in ec2.stderr, ec2.stderr


def bolt_client_version() -> str:
    import bolt_client

    return bolt_client.__version__
