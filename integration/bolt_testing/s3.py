"""A real S3 server for the pack lifecycle tests: moto in server mode, as a
child process on a loopback port, plus the signed envelope of docs/packs.md so
tests can forge stage indexes (tampered, replayed, pointing at nothing).
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = ["MotoServer", "free_port", "sign_envelope", "open_envelope", "key_id", "load_private_key"]

REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoServer:
    """``with MotoServer() as s3:`` an S3 endpoint with one empty bucket.

    ``.endpoint`` (``http://127.0.0.1:PORT``), ``.bucket``, ``.client`` (boto3,
    path-style), ``.env`` (the AWS_* variables a child process needs) and
    ``.log_path`` (moto's request log, one line per request).
    """

    def __init__(self, bucket: str = "bolt-packs", log_dir: Path | None = None) -> None:
        self.bucket = bucket
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_dir or tempfile.mkdtemp(prefix="bolt-moto-")) / "moto.log"
        self.env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: Any = None

    def start(self, timeout: float = 30.0) -> "MotoServer":
        import boto3
        from botocore.config import Config

        exe = Path(sys.executable).parent / "moto_server"
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*cmd, "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto did not start:\n{self.log_path.read_text(errors='replace')[-4000:]}")
                time.sleep(0.1)
        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )
        self.client.create_bucket(Bucket=self.bucket)
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    # --- conveniences for tests ---------------------------------------------

    def get(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body)

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def __enter__(self) -> "MotoServer":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- signed envelopes (docs/packs.md, "S3 layout") ---------------------------


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of the sha256 of the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


# DER of an ed25519 PKCS#8 key's privateKey field: OCTET STRING { OCTET STRING (32) }.
_SEED_PREFIX = bytes.fromhex("04220420")


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """An ed25519 PKCS#8 PEM key, v1 (RFC 8410) or v2 with the public key
    (RFC 5958, as ring writes it, which `cryptography` does not parse)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except ValueError:
        body = b"".join(line for line in pem.splitlines() if line and not line.startswith(b"-----"))
        der = base64.b64decode(body)
        at = der.find(_SEED_PREFIX)
        if at < 0:
            raise
        key = Ed25519PrivateKey.from_private_bytes(der[at + 4 : at + 36])
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an ed25519 private key")
    return key


def sign_envelope(payload: dict[str, Any], private_key_pem: bytes) -> bytes:
    """``{"payload": JSON text, "key_id", "signature"}`` signed with a PKCS#8 PEM ed25519 key."""
    key = load_private_key(private_key_pem)
    text = json.dumps(payload, separators=(",", ":"))
    envelope = {
        "payload": text,
        "key_id": key_id(key.public_key()),
        "signature": base64.b64encode(key.sign(text.encode())).decode(),
    }
    return json.dumps(envelope).encode()


def open_envelope(data: bytes, public_key_pem: bytes | None = None) -> dict[str, Any]:
    """The payload of an envelope; with a key, its key id and signature are checked first."""
    envelope = json.loads(data)
    if public_key_pem is not None:
        key = serialization.load_pem_public_key(public_key_pem)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an ed25519 public key")
        if envelope["key_id"] != key_id(key):
            raise ValueError(f"signed by {envelope['key_id']}, not by {key_id(key)}")
        key.verify(base64.b64decode(envelope["signature"]), envelope["payload"].encode())
    payload: dict[str, Any] = json.loads(envelope["payload"])
    return payload
