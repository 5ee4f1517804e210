"""Helpers for the metrics tests: a real Pushgateway / Prometheus on loopback, HTTP reads, sample lookup."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 15.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def samples(text: str, name: str, **labels: str) -> list[float]:
    """Values of the samples called `name` whose labels include `labels` (Prometheus text exposition)."""
    return [
        s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def debian_binary(name: str, package: str, *, required_in_ci: bool = True) -> str:
    """Path of a Debian-packaged binary; skip when missing, but fail in CI for one setup.sh installs."""
    path = shutil.which(name) or f"/usr/bin/{name}"
    if not os.path.exists(path):
        if required_in_ci and os.environ.get("CI"):
            pytest.fail(f"{name} is missing; scripts/setup.sh installs the Debian package {package}")
        pytest.skip(f"{name} not installed (apt-get install {package})")
    return path


@contextlib.contextmanager
def serving_process(args: list[str], ready_url: str, what: str, timeout_s: float = 20) -> Iterator[None]:
    """Start a server process, wait until `ready_url` answers, stop it by PID afterwards."""
    # its log goes to a file: a pipe nobody reads fills up and blocks the server
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    http_get(ready_url, timeout=1)
                    break
                except OSError:
                    if proc.poll() is not None:
                        log.seek(0)
                        tail = log.read().decode(errors="replace")[-2000:]
                        raise RuntimeError(f"{what} exited with {proc.returncode}: {tail}") from None
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{what} did not become ready at {ready_url}") from None
                    time.sleep(0.05)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def pushgateway() -> Iterator[str]:
    """A real Pushgateway (Debian prometheus-pushgateway) on a free loopback port; yields its URL."""
    binary = debian_binary("prometheus-pushgateway", "prometheus-pushgateway")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving_process(
        [binary, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file="],
        f"{url}/-/ready",
        "Pushgateway",
    ):
        yield url
