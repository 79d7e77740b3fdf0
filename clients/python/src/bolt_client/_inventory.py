"""Inventory on demand: providers that list the instances to act on (private).

Bolt keeps no catalogue of its own: every run asks a provider. A provider is
anything with ``instances() -> list[Instance]`` (:class:`InventoryProvider`).
Three ship here: :class:`StaticInventory` (a list, or a YAML/JSON file),
:class:`EC2Inventory` (DescribeInstances with filters) and
:class:`ClouddriverInventory` (Spinnaker's Clouddriver REST API).
:func:`load_inventory` turns a CLI-style spec into a provider.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import yaml

from ._exceptions import ConfigError

__all__ = [
    "ClouddriverInventory",
    "EC2Inventory",
    "Instance",
    "InventoryError",
    "InventoryProvider",
    "StaticInventory",
    "load_inventory",
]


class InventoryError(ConfigError):
    """A provider could not list instances (bad spec, API error)."""


@dataclass(frozen=True)
class Instance:
    """One instance to act on. ``address`` is ``host`` or ``host:port`` of its agent."""

    id: str
    address: str
    app: str = ""
    availability_zone: str = ""
    region: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tags"] = dict(self.tags)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Instance":
        if isinstance(d, str):
            return cls(id=d, address=d)
        try:
            address = str(d.get("address") or d.get("host") or d["id"])
            iid = str(d.get("id") or d.get("instance_id") or address)
        except KeyError as exc:
            raise InventoryError(f"instance entry needs an address or id: {dict(d)!r}") from exc
        az = str(d.get("availability_zone") or d.get("az") or "")
        region = str(d.get("region") or "") or (az[:-1] if az and az[-1].isalpha() else "")
        return cls(
            id=iid,
            address=address,
            app=str(d.get("app") or ""),
            availability_zone=az,
            region=region,
            tags={str(k): str(v) for k, v in (d.get("tags") or {}).items()},
        )


@runtime_checkable
class InventoryProvider(Protocol):
    """Anything that lists instances on demand."""

    def instances(self) -> list[Instance]: ...


class StaticInventory:
    """A fixed list of instances, or a YAML/JSON file read at each call.

    The file holds a list of entries (or a mapping with an ``instances`` list);
    each entry is a ``host[:port]`` string or a mapping with ``id``, ``address``,
    ``app``, ``availability_zone`` (or ``az``), ``region`` and ``tags``.
    """

    def __init__(self, instances: Iterable[Instance | Mapping[str, Any] | str] | None = None, *, path: str | os.PathLike[str] | None = None) -> None:
        if (instances is None) == (path is None):
            raise InventoryError("StaticInventory needs either instances or path")
        self.path = Path(path) if path is not None else None
        self._instances = [self._coerce(i) for i in instances] if instances is not None else []

    @staticmethod
    def _coerce(i: Instance | Mapping[str, Any] | str) -> Instance:
        if isinstance(i, Instance):
            return i
        if isinstance(i, str):
            return Instance(id=i, address=i)
        return Instance.from_dict(i)

    def instances(self) -> list[Instance]:
        if self.path is None:
            return list(self._instances)
        try:
            text = self.path.read_text()
        except OSError as exc:
            raise InventoryError(f"cannot read inventory {self.path}: {exc.strerror or exc}") from exc
        try:
            data = json.loads(text) if self.path.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise InventoryError(f"inventory {self.path}: {exc}") from exc
        if isinstance(data, Mapping):
            data = data.get("instances")
        if not isinstance(data, list):
            raise InventoryError(f"inventory {self.path}: expected a list of instances")
        out = [self._coerce(d) for d in data]
        ids = [i.id for i in out]
        if len(set(ids)) != len(ids):
            raise InventoryError(f"inventory {self.path}: duplicate instance ids")
        return out


class EC2Inventory:
    """Running EC2 instances from DescribeInstances (boto3), paginated.

    ``filters`` are DescribeInstances filters as a mapping (``{"tag:app":
    "kafka", "instance-state-name": "running"}``; a value may be a list);
    ``instance-state-name=running`` is added unless given. ``address`` picks
    ``private`` (PrivateIpAddress, the default) or ``public`` (PublicIpAddress,
    falling back to PublicDnsName). ``app_tag`` names the tag that holds the
    app. ``port`` is appended to each address. Credentials and region follow
    boto3's usual chain; ``endpoint_url`` points at another EC2 endpoint.
    """

    def __init__(
        self,
        *,
        region: str | None = None,
        filters: Mapping[str, str | Sequence[str]] | None = None,
        address: str = "private",
        app_tag: str = "app",
        port: int | None = None,
        endpoint_url: str | None = None,
        session: Any = None,
    ) -> None:
        if address not in ("private", "public"):
            raise InventoryError(f"address must be 'private' or 'public', not {address!r}")
        self.region = region
        self.filters = dict(filters or {})
        self.address = address
        self.app_tag = app_tag
        self.port = port
        self.endpoint_url = endpoint_url
        self.session = session

    def _filters(self) -> list[dict[str, Any]]:
        f = {k: ([v] if isinstance(v, str) else list(v)) for k, v in self.filters.items()}
        f.setdefault("instance-state-name", ["running"])
        return [{"Name": k, "Values": v} for k, v in f.items()]

    def instances(self) -> list[Instance]:
        try:
            import boto3
            import botocore.exceptions
        except ImportError:
            raise InventoryError(
                "the EC2 inventory needs boto3: pip install 'bolt-client[ec2]'"
            ) from None

        session = self.session or boto3.session.Session()
        client = session.client("ec2", region_name=self.region, endpoint_url=self.endpoint_url)
        region = self.region or client.meta.region_name or ""
        out: list[Instance] = []
        try:
            for page in client.get_paginator("describe_instances").paginate(Filters=self._filters()):
                for res in page.get("Reservations", []):
                    for i in res.get("Instances", []):
                        inst = self._instance(i, region)
                        if inst is not None:
                            out.append(inst)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise InventoryError(f"EC2 DescribeInstances failed: {exc}") from exc
        return out

    def _instance(self, i: Mapping[str, Any], region: str) -> Instance | None:
        if self.address == "private":
            host = i.get("PrivateIpAddress")
        else:
            host = i.get("PublicIpAddress") or i.get("PublicDnsName")
        if not host:
            return None
        tags = {t["Key"]: t["Value"] for t in i.get("Tags", []) or []}
        return Instance(
            id=i["InstanceId"],
            address=f"{host}:{self.port}" if self.port else str(host),
            app=tags.get(self.app_tag, ""),
            availability_zone=(i.get("Placement") or {}).get("AvailabilityZone", ""),
            region=region,
            tags=tags,
        )


class ClouddriverInventory:
    """Instances of a Spinnaker application, from Clouddriver's REST API.

    ``GET {base_url}/applications/{app}/serverGroups`` lists the server groups
    (``name``, ``account``, ``region``, ``cloudProvider``, ``isDisabled``,
    ``instances[]`` with ``id``/``name``, ``availabilityZone``, ``healthState``).
    Each instance's address comes from ``GET
    {base_url}/instances/{account}/{region}/{id}`` (``privateIpAddress``, or
    ``publicIpAddress``/``publicDnsName`` with ``address="public"``) unless the
    summary already carries it. Optional narrowing: ``account``, ``regions``,
    ``cluster``, ``include_disabled`` (default False), ``healthy_only``
    (``healthState == "Up"``).
    """

    def __init__(
        self,
        base_url: str,
        app: str,
        *,
        account: str | None = None,
        regions: Sequence[str] | None = None,
        cluster: str | None = None,
        include_disabled: bool = False,
        healthy_only: bool = False,
        address: str = "private",
        port: int | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        workers: int = 16,
    ) -> None:
        if address not in ("private", "public"):
            raise InventoryError(f"address must be 'private' or 'public', not {address!r}")
        self.base_url = base_url.rstrip("/")
        self.app = app
        self.account = account
        self.regions = set(regions) if regions else None
        self.cluster = cluster
        self.include_disabled = include_disabled
        self.healthy_only = healthy_only
        self.address = address
        self.port = port
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.workers = workers

    def _get(self, path: str) -> Any:
        url = self.base_url + path
        req = urllib.request.Request(url, headers={"Accept": "application/json", **self.headers})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            raise InventoryError(f"Clouddriver GET {url}: HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise InventoryError(f"Clouddriver GET {url}: {exc}") from exc

    def _host(self, d: Mapping[str, Any]) -> str | None:
        if self.address == "private":
            h = d.get("privateIpAddress") or d.get("privateDnsName")
        else:
            h = d.get("publicIpAddress") or d.get("publicDnsName")
        return str(h) if h else None

    def instances(self) -> list[Instance]:
        q = urllib.parse.quote
        groups = self._get(f"/applications/{q(self.app)}/serverGroups")
        if not isinstance(groups, list):
            raise InventoryError("Clouddriver: serverGroups payload is not a list")
        todo: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = []
        for g in groups:
            if self.account and g.get("account") != self.account:
                continue
            if self.regions and g.get("region") not in self.regions:
                continue
            if self.cluster and g.get("cluster") != self.cluster:
                continue
            if g.get("isDisabled") and not self.include_disabled:
                continue
            for i in g.get("instances") or []:
                if self.healthy_only and i.get("healthState") != "Up":
                    continue
                todo.append((g, i))

        def resolve(pair: tuple[Mapping[str, Any], Mapping[str, Any]]) -> Instance | None:
            g, i = pair
            iid = str(i.get("id") or i.get("name"))
            host = self._host(i)
            az = str(i.get("availabilityZone") or i.get("zone") or "")
            if host is None:
                detail = self._get(f"/instances/{q(str(g.get('account')))}/{q(str(g.get('region')))}/{q(iid)}")
                host = self._host(detail)
                az = az or str((detail.get("placement") or {}).get("availabilityZone") or "")
            if host is None:
                return None
            return Instance(
                id=iid,
                address=f"{host}:{self.port}" if self.port else host,
                app=self.app,
                availability_zone=az,
                region=str(g.get("region") or ""),
                tags={"serverGroup": str(g.get("name", "")), "account": str(g.get("account", ""))},
            )

        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            return [i for i in pool.map(resolve, todo) if i is not None]


def _kv(spec: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in filter(None, spec.split(",")):
        k, sep, v = part.partition("=")
        if not sep:
            raise InventoryError(f"bad inventory option {part!r}: expected KEY=VALUE")
        out[k.strip()] = v.strip()
    return out


def load_inventory(spec: str) -> InventoryProvider:
    """A provider from a spec string (as the CLI's ``--inventory`` takes it):

    - ``FILE`` (``.yaml``/``.yml``/``.json``): a static inventory file;
    - ``hosts:HOST[,HOST...]``: a static list;
    - ``ec2:region=us-east-1,tag:app=kafka[,address=public][,port=7443][,endpoint=URL][,FILTER=VALUE...]``;
    - ``clouddriver:url=http://clouddriver:7002,app=kafka[,account=prod][,region=us-east-1][,cluster=...][,address=public][,port=7443]``.
    """
    kind, sep, rest = spec.partition(":")
    if sep and kind == "hosts":
        return StaticInventory([h for h in rest.split(",") if h])
    if sep and kind == "ec2":
        opts = _kv(rest)
        region = opts.pop("region", None)
        address = opts.pop("address", "private")
        port = opts.pop("port", None)
        endpoint = opts.pop("endpoint", None)
        app_tag = opts.pop("app_tag", "app")
        return EC2Inventory(
            region=region,
            filters={k: v.split("|") for k, v in opts.items()},
            address=address,
            app_tag=app_tag,
            port=int(port) if port else None,
            endpoint_url=endpoint,
        )
    if sep and kind == "clouddriver":
        opts = _kv(rest)
        try:
            url, app = opts.pop("url"), opts.pop("app")
        except KeyError as exc:
            raise InventoryError("clouddriver inventory needs url= and app=") from exc
        port = opts.pop("port", None)
        region = opts.pop("region", None)
        prov = ClouddriverInventory(
            url,
            app,
            account=opts.pop("account", None),
            regions=region.split("|") if region else None,
            cluster=opts.pop("cluster", None),
            address=opts.pop("address", "private"),
            port=int(port) if port else None,
            healthy_only=opts.pop("healthy_only", "false").lower() == "true",
        )
        if opts:
            raise InventoryError(f"unknown clouddriver options: {', '.join(opts)}")
        return prov
    return StaticInventory(path=spec)
