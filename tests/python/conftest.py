"""A real `skiff server` for the official Python client to talk to."""
import hashlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from kubernetes import client, config

ROOT = Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def api_client():
    binary = os.environ.get("SKIFF_BIN", str(ROOT / "target/debug/skiff"))
    work = Path(tempfile.mkdtemp(prefix="skiff-pytest-"))
    kubeconfig = work / "kubeconfig.yaml"
    log = open(work / "server.log", "w")
    server = subprocess.Popen(
        [binary, "server", "--disable-agent", "--bind-address", "127.0.0.1",
         "--https-listen-port", str(free_port()), "--data-dir", str(work / "data"),
         "--write-kubeconfig", str(kubeconfig)],
        stdout=log, stderr=log)
    deadline = time.time() + 30
    while not kubeconfig.exists():
        assert server.poll() is None, (work / "server.log").read_text()
        assert time.time() < deadline, "skiff server did not start"
        time.sleep(0.05)
    api = config.new_client_from_config(str(kubeconfig))
    yield api
    server.kill()
    server.wait()
    log.close()
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def core(api_client):
    return client.CoreV1Api(api_client)


@pytest.fixture
def namespace(core, request):
    """A fresh namespace per test."""
    readable = re.sub(r"[^a-z0-9-]", "-", request.node.name.replace("_", "-").lower())[:32].rstrip("-")
    # Parametrized names can share their first characters: keep them apart.
    name = f"t-{readable}-{hashlib.sha1(request.node.name.encode()).hexdigest()[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name
