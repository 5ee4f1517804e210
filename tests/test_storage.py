"""The store interface against a real SeaweedFS server and a folder; S3 settings; the local store lifecycle."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drsynth.errors import StoreError
from drsynth.local_store import free_ports, read_state, running_store, start_local_store, stop_local_store
from drsynth.storage import FileStore, RetryPolicy, S3Settings, S3Store, open_store, parse_endpoint

FAST_RETRY = RetryPolicy(attempts=3, base_delay_s=0.05, max_delay_s=0.1)


def _exercise(store) -> None:
    """The same behaviour from every store: put/stat/checksum/get/download/list/delete."""
    store.prepare_for_write()
    assert store.stat("a/b.bin") is None and store.get_bytes("a/b.bin") is None
    data = os.urandom(3000)
    store.put_bytes("a/b.bin", data)
    assert store.stat("a/b.bin").size == 3000
    assert store.get_bytes("a/b.bin") == data
    assert store.checksum("a/b.bin") == hashlib.sha256(data).hexdigest()
    src = Path(os.environ.get("PYTEST_TMP", "/tmp")) / f"src-{os.getpid()}.bin"
    src.write_bytes(data[::-1])
    try:
        digest = hashlib.sha256(data[::-1]).hexdigest()
        store.put_file("c.tar", src, sha256=digest)
    finally:
        src.unlink()
    assert store.checksum("c.tar") == digest
    assert [o.key for o in store.list()] == ["a/b.bin", "c.tar"]
    assert [o.key for o in store.list("a/")] == ["a/b.bin"]
    out = Path(os.environ.get("PYTEST_TMP", "/tmp")) / f"dl-{os.getpid()}" / "x.bin"
    assert store.download("c.tar", out) == digest and out.read_bytes() == data[::-1]
    store.delete("a/b.bin")
    store.delete("a/b.bin")  # deleting what is gone is fine
    assert store.stat("a/b.bin") is None


def test_file_store_roundtrip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_TMP", str(tmp_path))
    store = open_store(tmp_path / "ds")
    assert isinstance(store, FileStore) and store.uri == (tmp_path / "ds").as_uri()
    _exercise(store)
    assert store.local_path("c.tar") == tmp_path / "ds" / "c.tar"
    assert not [p for p in (tmp_path / "ds").rglob("*.tmp")], "no temporary files left behind"
    # file:// URIs and plain paths name the same store
    assert open_store(f"file://{tmp_path}/ds").root == store.root


def test_s3_store_roundtrip(s3_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_TMP", str(tmp_path))
    store = open_store(s3_uri, retry=FAST_RETRY)
    assert isinstance(store, S3Store) and store.uri == s3_uri
    _exercise(store)
    assert store.local_path("c.tar") is None


def test_uri_errors() -> None:
    with pytest.raises(StoreError, match="unsupported dataset URI scheme 'gs'"):
        open_store("gs://bucket/x")
    with pytest.raises(StoreError, match="invalid bucket name 'Bad_Bucket'"):
        open_store("s3://Bad_Bucket/x")
    with pytest.raises(StoreError, match="file:///absolute/path"):
        open_store("file://host/x")


def test_s3_settings_from_env() -> None:
    base = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    s = S3Settings.from_env({**base, "AWS_ENDPOINT_URL": "https://s3.example.com"})
    assert (s.endpoint, s.secure) == ("s3.example.com", True)
    s = S3Settings.from_env(
        {**base, "MINIO_ENDPOINT": "minio.kubeflow:9000", "AWS_ENDPOINT_URL": "http://x:1"}
    )
    assert (s.endpoint, s.secure) == ("minio.kubeflow:9000", False)  # MINIO_ENDPOINT wins, bare = http
    s = S3Settings.from_env({**base, "MINIO_ENDPOINT": "minio:9000", "MINIO_SECURE": "true"})
    assert s.secure and s.endpoint_url == "https://minio:9000"
    s = S3Settings.from_env({**base, "MINIO_ENDPOINT": "https://m:9000", "MINIO_SECURE": "false"})
    assert not s.secure
    assert parse_endpoint("http://127.0.0.1:8333") == ("127.0.0.1:8333", False)
    with pytest.raises(StoreError, match="no S3 endpoint configured.*MINIO_ENDPOINT"):
        S3Settings.from_env(base)
    with pytest.raises(StoreError, match="AWS_SECRET_ACCESS_KEY is not set"):
        S3Settings.from_env({"MINIO_ENDPOINT": "m:9000", "AWS_ACCESS_KEY_ID": "k"})
    with pytest.raises(StoreError, match="MINIO_SECURE must be true or false"):
        S3Settings.from_env({**base, "MINIO_ENDPOINT": "m:9000", "MINIO_SECURE": "maybe"})
    with pytest.raises(StoreError, match="no path after the host"):
        S3Settings.from_env({**base, "MINIO_ENDPOINT": "http://m:9000/bucket"})


def test_missing_credentials_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for v in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("MINIO_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(
        StoreError, match=r"127\.0\.0\.1:9 is configured but AWS_ACCESS_KEY_ID and AWS_SECRET"
    ):
        open_store("s3://bucket/x")


def test_unreachable_endpoint_fails_after_bounded_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_ports(1)[0]  # nothing listens there
    monkeypatch.setenv("MINIO_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    store = open_store("s3://bucket/x", retry=FAST_RETRY)
    start = time.monotonic()
    with pytest.raises(StoreError) as e:
        store.stat("dataset.json")
    msg = str(e.value)
    assert f"http://127.0.0.1:{port}" in msg and "after 3 attempts" in msg and "MINIO_ENDPOINT" in msg
    assert "Connection refused" in msg
    assert time.monotonic() - start < 5


def test_bad_credentials_and_missing_bucket(s3_env, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store("s3://no-such-bucket-here/x", retry=FAST_RETRY)
    with pytest.raises(StoreError, match="bucket 'no-such-bucket-here' does not exist on http://127"):
        store.get_bytes("dataset.json")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    store = open_store("s3://some-bucket/x", retry=FAST_RETRY)
    with pytest.raises(StoreError, match="refused .*Check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"):
        store.prepare_for_write()


def test_local_store_lifecycle(tmp_path: Path) -> None:
    """start -> state file and readiness -> start again returns the same -> stop by PID -> gone."""
    d = tmp_path / "store"
    port = free_ports(1)[0]
    store = start_local_store(d, port=port)
    try:
        assert store.endpoint_url == f"http://127.0.0.1:{port}"
        assert read_state(d) == store and running_store(d) == store
        assert (d / "store.json").stat().st_mode & 0o077 == 0, "credentials are private"
        assert "export MINIO_ENDPOINT=http://127.0.0.1:" in store.exports()
        assert start_local_store(d) == store  # idempotent
        with pytest.raises(StoreError, match="already running"):
            start_local_store(d, port=port + 1 if port < 65535 else port - 1)
        # everything it listens on is loopback
        listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
        ours = [line for line in listening.splitlines() if f"pid={store.pid}," in line]
        assert ours and all("127.0.0.1:" in line for line in ours), ours
    finally:
        stopped = stop_local_store(d)
    assert stopped is not None and stopped.pid == store.pid
    assert running_store(d) is None and not (d / "store.json").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(store.pid, 0)
    assert stop_local_store(d) is None


@pytest.mark.slow
def test_store_cli_up_status_down(tmp_path: Path) -> None:
    d = tmp_path / "clistore"
    drsynth = [sys.executable, "-m", "drsynth"]
    port = str(free_ports(1)[0])
    up = subprocess.run(
        [*drsynth, "store", "up", "--dir", str(d), "--port", port], capture_output=True, text=True
    )
    try:
        assert up.returncode == 0, up.stderr
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in up.stdout.splitlines()
            if line.startswith("export")
        )
        assert exports["MINIO_ENDPOINT"] == f"http://127.0.0.1:{port}"
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MINIO_SECURE"} <= set(exports)
        status = subprocess.run(
            [*drsynth, "store", "status", "--dir", str(d)], capture_output=True, text=True
        )
        assert status.returncode == 0 and f"127.0.0.1:{port}" in status.stderr
    finally:
        down = subprocess.run([*drsynth, "store", "down", "--dir", str(d)], capture_output=True, text=True)
    assert down.returncode == 0 and "stopped" in down.stderr
    status = subprocess.run([*drsynth, "store", "status", "--dir", str(d)], capture_output=True, text=True)
    assert status.returncode == 1


def test_stop_ignores_a_recycled_pid(tmp_path: Path) -> None:
    """A stale state file whose PID now belongs to another process must not kill that process."""
    other = subprocess.Popen(["sleep", "30"])
    try:
        d = tmp_path / "stale"
        d.mkdir()
        state = {"dir": str(d), "pid": other.pid, "host": "127.0.0.1", "s3_port": 1, "ports": {}}
        state |= {"access_key": "a", "secret_key": "b", "started": "x"}
        (d / "store.json").write_text(json.dumps(state))
        assert running_store(d) is None
        assert stop_local_store(d) is None
        assert other.poll() is None, "the unrelated process is still alive"
    finally:
        other.send_signal(signal.SIGTERM)
        other.wait()
