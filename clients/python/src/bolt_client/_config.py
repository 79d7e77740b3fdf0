"""Client configuration: mTLS material, targets, deadlines and keep-alive (private).

Certificate paths come from, in order: explicit arguments (CLI flags), the
environment (``BOLT_CA``, ``BOLT_CERT``, ``BOLT_KEY``), then a config file
(``BOLT_CLIENT_CONFIG`` or ``~/.config/bolt/config.yaml``; YAML or JSON with keys
``ca``, ``cert``, ``key`` and optionally ``server_name``, ``port``, ``timeout``).

Like ``aws --profile``, the file may hold named ``profiles`` (each with the same
keys); ``profile=`` (the CLI's ``--profile``) or ``BOLT_PROFILE`` picks one, and
its keys override the file's top-level ones.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import yaml

from ._exceptions import ConfigError

__all__ = ["DEFAULT_PORT", "DEFAULT_TIMEOUT", "Config", "RetryPolicy", "TLSConfig", "normalize_target"]

#: Port of an agent when a target names only a host.
DEFAULT_PORT = 7443
#: Default deadline of a unary call, in seconds.
DEFAULT_TIMEOUT = 10.0
#: Keep-alive ping interval and ack timeout (milliseconds) on every channel.
KEEPALIVE_TIME_MS = 30_000
KEEPALIVE_TIMEOUT_MS = 10_000

ENV_CA = "BOLT_CA"
ENV_CERT = "BOLT_CERT"
ENV_KEY = "BOLT_KEY"
#: The client's own name: ``BOLT_CONFIG`` is the agent's TOML config, and one
#: variable meaning two files would break whichever was set for the other.
ENV_CONFIG = "BOLT_CLIENT_CONFIG"
ENV_PROFILE = "BOLT_PROFILE"
_KEYS = {"ca", "cert", "key", "server_name", "port", "timeout"}


def default_config_path() -> Path:
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "bolt" / "config.yaml"


def _read_config_file(path: Path | None, profile: str | None = None) -> dict[str, Any]:
    p = path or default_config_path()
    if not p.exists():
        if path is not None:
            raise ConfigError(f"config file {p} does not exist")
        if profile:
            raise ConfigError(f"profile {profile!r} asked for, but there is no config file {p}")
        return {}
    try:
        text = p.read_text(encoding="utf-8")
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {p}: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p}: expected a mapping")
    profiles = data.pop("profiles", None) or {}
    if not isinstance(profiles, dict) or not all(isinstance(v, dict) for v in profiles.values()):
        raise ConfigError(f"config file {p}: 'profiles' must map names to mappings of {sorted(_KEYS)}")
    out = dict(data)
    if profile:
        if profile not in profiles:
            known = ", ".join(sorted(map(str, profiles))) or "none"
            raise ConfigError(f"config file {p}: no profile {profile!r} (profiles: {known})")
        out.update(profiles[profile])
    base = p.parent
    for k in ("ca", "cert", "key"):
        if k in out and out[k] is not None:
            out[k] = str((base / os.path.expanduser(str(out[k]))).resolve())
    for k, kind in (("port", int), ("timeout", float)):
        if k in out:
            try:
                out[k] = kind(out[k])
            except (TypeError, ValueError):
                raise ConfigError(f"config file {p}: {k} must be a number, got {out[k]!r}") from None
    return out


@dataclass(frozen=True)
class TLSConfig:
    """mTLS material: the CA that signed the agents' certificates and this client's identity."""

    ca: Path
    cert: Path
    key: Path
    #: Name to verify in the agent's certificate instead of the target host.
    server_name: str | None = None

    @classmethod
    def resolve(
        cls,
        ca: str | os.PathLike[str] | None = None,
        cert: str | os.PathLike[str] | None = None,
        key: str | os.PathLike[str] | None = None,
        *,
        server_name: str | None = None,
        config_file: str | os.PathLike[str] | None = None,
    ) -> "TLSConfig":
        """Arguments first, then ``BOLT_CA``/``BOLT_CERT``/``BOLT_KEY``, then the config file."""
        return Config.load(ca=ca, cert=cert, key=key, server_name=server_name, config_file=config_file).tls()

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca, "CA certificate"),
            private_key=_read(self.key, "client key"),
            certificate_chain=_read(self.cert, "client certificate"),
        )


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


@dataclass(frozen=True)
class RetryPolicy:
    """Retries after UNAVAILABLE: gRPC's own, from the channel's service config, for
    unary calls (at most 5 attempts, gRPC's ceiling; ``attempts=1`` turns them off);
    this client's, with the same backoff, for reconnecting a broken output stream."""

    attempts: int = 3
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0

    def backoff(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (1-based), with up to 20% jitter."""
        import random

        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return base * (0.8 + 0.4 * random.random())


@dataclass(frozen=True)
class Config:
    """Resolved client settings (see the module docstring for precedence)."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    server_name: str | None = None
    port: int = DEFAULT_PORT
    timeout: float = DEFAULT_TIMEOUT
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        *,
        ca: str | os.PathLike[str] | None = None,
        cert: str | os.PathLike[str] | None = None,
        key: str | os.PathLike[str] | None = None,
        server_name: str | None = None,
        timeout: float | None = None,
        config_file: str | os.PathLike[str] | None = None,
        profile: str | None = None,
    ) -> "Config":
        file = _read_config_file(
            Path(config_file) if config_file else None, profile or os.environ.get(ENV_PROFILE) or None
        )

        def pick(arg: Any, env: str | None, key_: str) -> Any:
            if arg is not None:
                return str(arg)
            if env and os.environ.get(env):
                return os.environ[env]
            return file.get(key_)

        return cls(
            ca=pick(ca, ENV_CA, "ca"),
            cert=pick(cert, ENV_CERT, "cert"),
            key=pick(key, ENV_KEY, "key"),
            server_name=server_name or file.get("server_name"),
            port=int(file.get("port", DEFAULT_PORT)),
            timeout=float(timeout if timeout is not None else file.get("timeout", DEFAULT_TIMEOUT)),
            extra={k: v for k, v in file.items() if k not in _KEYS},
        )

    def tls(self) -> TLSConfig:
        missing = [
            f"{name} (--{name} or {env})"
            for name, env, v in (("ca", ENV_CA, self.ca), ("cert", ENV_CERT, self.cert), ("key", ENV_KEY, self.key))
            if not v
        ]
        if missing:
            raise ConfigError(
                "mTLS material missing: " + ", ".join(missing) + f"; or set them in {default_config_path()}"
            )
        assert self.ca and self.cert and self.key
        return TLSConfig(Path(self.ca), Path(self.cert), Path(self.key), self.server_name)


def normalize_target(target: str, default_port: int = DEFAULT_PORT) -> str:
    """``host`` → ``host:7443``; ``host:port`` and ``[v6]:port`` unchanged."""
    t = target.strip()
    if not t:
        raise ConfigError("empty target")
    if t.startswith("["):
        return t if "]:" in t else f"{t}:{default_port}"
    if t.count(":") == 1:
        host, port = t.rsplit(":", 1)
        if not port.isdigit() or not host:
            raise ConfigError(f"bad target {target!r}: expected HOST[:PORT]")
        return t
    if t.count(":") > 1:  # bare IPv6 address
        return f"[{t}]:{default_port}"
    return f"{t}:{default_port}"


def service_config(retry: RetryPolicy) -> str:
    """gRPC's service config for a channel to an agent: every ``bolt.v1.Bolt``
    method retried on UNAVAILABLE by gRPC itself (every method is idempotent;
    Execute through its idempotency key), with retry throttling, so that a
    struggling agent is not hammered by every client's retries at once."""
    policy: dict[str, Any] = {"name": [{"service": "bolt.v1.Bolt"}]}
    if retry.attempts > 1:
        policy["retryPolicy"] = {
            "maxAttempts": min(retry.attempts, 5),  # gRPC's own ceiling
            "initialBackoff": f"{retry.initial_backoff:g}s",
            "maxBackoff": f"{retry.max_backoff:g}s",
            "backoffMultiplier": retry.multiplier,
            "retryableStatusCodes": ["UNAVAILABLE"],
        }
    return json.dumps(
        {"methodConfig": [policy], "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1}},
        separators=(",", ":"),
    )


def channel_options(tls: TLSConfig, retry: RetryPolicy | None = None) -> list[tuple[str, Any]]:
    opts: list[tuple[str, Any]] = [
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.enable_retries", 1),
        ("grpc.service_config", service_config(retry or RetryPolicy())),
        # The agent's address names the channel; no DNS TXT service config.
        ("grpc.service_config_disable_resolution", 1),
    ]
    if tls.server_name:
        opts.append(("grpc.ssl_target_name_override", tls.server_name))
    return opts
