"""Inventory providers against real servers: a static file, moto's EC2 server, a Clouddriver stand-in."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bolt_client import (
    ClouddriverInventory, EC2Inventory, Instance, InventoryError, StaticInventory, load_inventory,
)

from conftest import free_port


def test_static_list_and_yaml_and_json_files(tmp_path: Path) -> None:
    s = StaticInventory(["10.0.0.1", {"id": "i-2", "address": "10.0.0.2:7000", "availability_zone": "us-east-1b"}])
    assert [i.id for i in s.instances()] == ["10.0.0.1", "i-2"]
    assert s.instances()[1].region == "us-east-1"

    y = tmp_path / "fleet.yaml"
    y.write_text(
        "instances:\n"
        "  - {id: i-1, address: 10.0.0.1, app: kafka, availability_zone: us-east-1a, region: us-east-1}\n"
        "  - {id: i-2, address: 10.0.0.2, app: kafka, az: us-east-1b}\n"
    )
    got = load_inventory(str(y)).instances()
    assert got == [
        Instance("i-1", "10.0.0.1", "kafka", "us-east-1a", "us-east-1"),
        Instance("i-2", "10.0.0.2", "kafka", "us-east-1b", "us-east-1"),
    ]
    j = tmp_path / "fleet.json"
    j.write_text(json.dumps([i.to_dict() for i in got]))
    assert load_inventory(str(j)).instances() == got
    assert [i.address for i in load_inventory("hosts:a:1,b:2").instances()] == ["a:1", "b:2"]

    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps([{"id": "x", "address": "a"}, {"id": "x", "address": "b"}]))
    with pytest.raises(InventoryError, match="duplicate"):
        load_inventory(str(dup)).instances()
    with pytest.raises(InventoryError, match="cannot read"):
        load_inventory(str(tmp_path / "missing.yaml")).instances()


# --- EC2 against moto in server mode -------------------------------------------------


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    port = free_port()
    exe = Path(sys.executable).parent / "moto_server"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
    proc = subprocess.Popen(cmd + ["-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("moto_server did not start")
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def test_ec2_inventory_with_tag_filters(moto_endpoint: str, aws_env: None) -> None:
    import boto3

    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_endpoint)
    image = ec2.describe_images()["Images"][0]["ImageId"]

    def launch(app: str, az: str, n: int) -> list[str]:
        r = ec2.run_instances(
            ImageId=image, MinCount=n, MaxCount=n, InstanceType="t3.micro",
            Placement={"AvailabilityZone": az},
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "app", "Value": app}, {"Key": "stage", "Value": "prod"}]}],
        )
        return [i["InstanceId"] for i in r["Instances"]]

    kafka = launch("kafka", "us-east-1a", 2) + launch("kafka", "us-east-1b", 1)
    other = launch("cassandra", "us-east-1a", 2)
    stopped = launch("kafka", "us-east-1c", 1)
    ec2.stop_instances(InstanceIds=stopped)

    inv = EC2Inventory(region="us-east-1", filters={"tag:app": "kafka"}, endpoint_url=moto_endpoint, port=7443)
    got = inv.instances()
    assert sorted(i.id for i in got) == sorted(kafka)  # not cassandra, not the stopped one
    desc = {i["InstanceId"]: i for r in ec2.describe_instances(InstanceIds=kafka)["Reservations"] for i in r["Instances"]}
    for i in got:
        assert i.app == "kafka" and i.region == "us-east-1" and i.tags["stage"] == "prod"
        assert i.availability_zone == desc[i.id]["Placement"]["AvailabilityZone"]
        assert i.address == f"{desc[i.id]['PrivateIpAddress']}:7443"
    assert sorted(i.availability_zone for i in got) == ["us-east-1a", "us-east-1a", "us-east-1b"]

    pub = load_inventory(f"ec2:region=us-east-1,tag:app=cassandra,address=public,endpoint={moto_endpoint}").instances()
    assert sorted(i.id for i in pub) == sorted(other)
    public = {
        x["InstanceId"]: x.get("PublicIpAddress") or x.get("PublicDnsName")
        for r in ec2.describe_instances(InstanceIds=other)["Reservations"] for x in r["Instances"]
    }
    assert all(public.values())
    assert {i.id: i.address for i in pub} == public

    with pytest.raises(InventoryError):
        EC2Inventory(address="elastic")


def test_ec2_inventory_api_errors_are_inventory_errors(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    inv = EC2Inventory(region="us-east-1", endpoint_url=f"http://127.0.0.1:{port}")
    with pytest.raises(InventoryError, match="DescribeInstances failed"):
        inv.instances()


# --- Clouddriver against a local HTTP server ------------------------------------------

# Shapes of Clouddriver's documented payloads: GET /applications/{app}/serverGroups
# (server group summaries with their instances) and GET /instances/{account}/{region}/{id}.
SERVER_GROUPS = [
    {
        "name": "kafka-prod-v012", "cluster": "kafka-prod", "account": "prod", "region": "us-east-1",
        "cloudProvider": "aws", "type": "aws", "isDisabled": False,
        "capacity": {"min": 3, "max": 3, "desired": 3},
        "instances": [
            {"id": "i-0a1", "name": "i-0a1", "availabilityZone": "us-east-1a", "healthState": "Up",
             "health": [{"type": "Amazon", "state": "Unknown"}]},
            {"id": "i-0b1", "name": "i-0b1", "availabilityZone": "us-east-1b", "healthState": "Down",
             "health": [{"type": "Amazon", "state": "Unknown"}]},
        ],
    },
    {
        "name": "kafka-prod-v011", "cluster": "kafka-prod", "account": "prod", "region": "us-east-1",
        "cloudProvider": "aws", "isDisabled": True,
        "instances": [{"id": "i-0old", "name": "i-0old", "availabilityZone": "us-east-1a", "healthState": "Up"}],
    },
    {
        "name": "kafka-test-v003", "cluster": "kafka-test", "account": "test", "region": "us-west-2",
        "cloudProvider": "aws", "isDisabled": False,
        "instances": [{"id": "i-0w1", "name": "i-0w1", "availabilityZone": "us-west-2a", "healthState": "Up"}],
    },
]
INSTANCE_DETAILS = {
    ("prod", "us-east-1", "i-0a1"): {"instanceId": "i-0a1", "privateIpAddress": "10.1.0.11", "publicIpAddress": "54.0.0.11",
                                     "placement": {"availabilityZone": "us-east-1a"}, "name": "i-0a1"},
    ("prod", "us-east-1", "i-0b1"): {"instanceId": "i-0b1", "privateIpAddress": "10.1.0.12", "publicDnsName": "ec2-b1.example",
                                     "placement": {"availabilityZone": "us-east-1b"}, "name": "i-0b1"},
    ("prod", "us-east-1", "i-0old"): {"instanceId": "i-0old", "privateIpAddress": "10.1.0.9"},
    ("test", "us-west-2", "i-0w1"): {"instanceId": "i-0w1", "privateIpAddress": "10.2.0.21",
                                     "placement": {"availabilityZone": "us-west-2a"}},
}


@pytest.fixture(scope="module")
def clouddriver() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(self.path)
            parts = self.path.strip("/").split("/")
            body: Any = None
            if parts[:1] == ["applications"] and len(parts) == 3 and parts[2] == "serverGroups" and parts[1] == "kafka":
                body = SERVER_GROUPS
            elif parts[:1] == ["instances"] and len(parts) == 4:
                body = INSTANCE_DETAILS.get((parts[1], parts[2], parts[3]))
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def test_clouddriver_inventory(clouddriver: tuple[str, list[str]]) -> None:
    url, seen = clouddriver
    got = ClouddriverInventory(url, "kafka", port=7443).instances()
    assert got == [
        Instance("i-0a1", "10.1.0.11:7443", "kafka", "us-east-1a", "us-east-1", {"serverGroup": "kafka-prod-v012", "account": "prod"}),
        Instance("i-0b1", "10.1.0.12:7443", "kafka", "us-east-1b", "us-east-1", {"serverGroup": "kafka-prod-v012", "account": "prod"}),
        Instance("i-0w1", "10.2.0.21:7443", "kafka", "us-west-2a", "us-west-2", {"serverGroup": "kafka-test-v003", "account": "test"}),
    ]  # the disabled server group is left out
    assert "/applications/kafka/serverGroups" in seen and "/instances/prod/us-east-1/i-0a1" in seen

    prod_up = load_inventory(f"clouddriver:url={url},app=kafka,account=prod,healthy_only=true").instances()
    assert [i.id for i in prod_up] == ["i-0a1"]
    west = ClouddriverInventory(url, "kafka", regions=["us-west-2"]).instances()
    assert [i.address for i in west] == ["10.2.0.21"]
    public = ClouddriverInventory(url, "kafka", account="prod", address="public").instances()
    assert [i.address for i in public] == ["54.0.0.11", "ec2-b1.example"]
    with_disabled = ClouddriverInventory(url, "kafka", account="prod", include_disabled=True).instances()
    assert "i-0old" in [i.id for i in with_disabled]


def test_clouddriver_errors(clouddriver: tuple[str, list[str]]) -> None:
    url, _ = clouddriver
    with pytest.raises(InventoryError, match="HTTP 404"):
        ClouddriverInventory(url, "nope").instances()
    with pytest.raises(InventoryError, match="needs url= and app="):
        load_inventory("clouddriver:app=kafka")
