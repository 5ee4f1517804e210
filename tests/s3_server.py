"""A real S3 server for tests: SeaweedFS (`weed mini`) on free loopback ports (a pytest plugin).

Registered from conftest.py, so any area's tests can use it:

- `s3_server` (session): one running server (`drsynth.local_store.LocalStore`), own data dir, stopped by its
  PID at the end of the session.
- `s3_env`: `s3_server` plus the S3 environment variables set for the test (MINIO_ENDPOINT, keys, ...).
- `s3_uri`: a fresh, unique `s3://bucket/prefix` on that server, with the environment set; use it as a
  dataset URI.
- `s3_server_factory`: start private servers (e.g. to kill one); all are stopped by PID at teardown.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drsynth.local_store import LocalStore, start_local_store, stop_local_store

S3_ENV_VARS = (
    "MINIO_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "MINIO_ACCESS_KEY",
    "MINIO_SECRET_KEY",
    "AWS_SESSION_TOKEN",
    "MINIO_SECURE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_CA_BUNDLE",
)


def use_store_env(monkeypatch: pytest.MonkeyPatch, server: LocalStore) -> None:
    """Point drsynth's S3 client at `server` for the current test (and nothing else)."""
    for name in S3_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStore]:
    d = tmp_path_factory.mktemp("seaweedfs")
    server = start_local_store(d, port=_free_port())
    try:
        yield server
    finally:
        stop_local_store(d)


@pytest.fixture
def s3_env(s3_server: LocalStore, monkeypatch: pytest.MonkeyPatch) -> LocalStore:
    use_store_env(monkeypatch, s3_server)
    return s3_server


@pytest.fixture
def s3_uri(s3_env: LocalStore) -> str:
    return f"s3://test-{uuid.uuid4().hex[:12]}/datasets/ds"


@pytest.fixture
def s3_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., LocalStore]]:
    started: list[Path] = []
    counter = itertools.count()

    def start(store_dir: Path | None = None, *, port: int | None = None) -> LocalStore:
        d = store_dir or tmp_path_factory.mktemp(f"seaweedfs-private-{next(counter)}")
        server = start_local_store(d, port=port if port is not None else _free_port())
        started.append(d)
        return server

    try:
        yield start
    finally:
        for d in started:
            stop_local_store(d)


def _free_port() -> int:
    from drsynth.local_store import free_ports

    return free_ports(1)[0]
