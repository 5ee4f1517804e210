"""drsynth serve over real HTTP on loopback: the CLI in a subprocess, bounded in time, one port picked
by the server itself (--port 0, read from its first line of output)."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from serve_helpers import color_image, make_color_classifier

httpx = pytest.importorskip("httpx")
pytest.importorskip("kserve")

START_TIMEOUT_S = 90


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class ServerProcess:
    """`drsynth serve ...` in a subprocess; `.url` once it printed where it listens."""

    def __init__(self, args: list[str], log_path: Path):
        self.log = open(log_path, "w")  # noqa: SIM115 (closed in stop)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "drsynth", "serve", *args],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
        )
        found: list[str] = []
        reader = threading.Thread(target=self._read_url, args=(found,), daemon=True)
        reader.start()
        reader.join(START_TIMEOUT_S)
        if not found:
            self.stop()
            raise RuntimeError(f"server did not start; log:\n{log_path.read_text()[-3000:]}")
        self.url = found[0]
        self.host, self.port = re.match(r"http://(.+):(\d+)", self.url).groups()
        self.port = int(self.port)

    def _read_url(self, found: list[str]) -> None:
        for line in self.proc.stdout:
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                found.append(m.group(1))
                return

    def stop(self) -> bool:
        """SIGTERM; True when the server shut down gracefully (uvicorn re-raises the signal afterwards)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        log = Path(self.log.name).read_text()
        return self.proc.returncode in (0, -signal.SIGTERM) and "Finished server process" in log


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return make_color_classifier(tmp_path_factory.mktemp("serve_http") / "color.onnx")


@pytest.fixture(scope="module")
def server(model_path, tmp_path_factory):
    srv = ServerProcess(
        [
            "--model", str(model_path), "--host", "127.0.0.1", "--port", "0",
            "--batch-wait-ms", "150", "--max-batch", "16", "--max-instances", "8",
            "--max-payload-bytes", "256KiB",
        ],
        tmp_path_factory.mktemp("serve_http_log") / "server.log",
    )  # fmt: skip
    yield srv
    assert srv.stop(), "SIGTERM should shut the server down cleanly"


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def metric(text: str, name: str, **labels) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        sample_labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
        if all(sample_labels.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_health_and_readiness(http):
    assert http.get("/").json() == {"status": "alive"}
    assert http.get("/v2/health/live").json() == {"live": True}
    assert http.get("/v2/health/ready").json() == {"ready": True}
    assert http.get("/v2/models/model/ready").json() == {"name": "model", "ready": True}
    meta = http.get("/v2/models/model").json()
    assert {o["name"] for o in meta["outputs"]} == {"label", "probability", "probabilities"}


def test_v1_v2_and_raw_image(http):
    r = http.post(
        "/v1/models/model:predict", json={"instances": [{"image_bytes": {"b64": b64(color_image("red"))}}]}
    )
    assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "red"
    r = http.post(
        "/v1/models/model:predict",
        content=color_image("green", fmt="PNG"),
        headers={"content-type": "image/png"},
    )
    assert r.json()["predictions"][0]["label"] == "green"
    body = {
        "inputs": [
            {
                "name": "image",
                "shape": [2],
                "datatype": "BYTES",
                "data": [b64(color_image("blue")), b64(color_image("red"))],
            }
        ]
    }
    r = http.post("/v2/models/model/infer", json=body)
    outputs = {o["name"]: o for o in r.json()["outputs"]}
    assert outputs["label"]["data"] == ["blue", "red"]
    assert outputs["probabilities"]["shape"] == [2, 3]


def test_concurrent_requests_are_batched_and_answered_right(http, server):
    before = http.get("/metrics").text
    colors = ["red", "green", "blue"] * 4
    barrier = threading.Barrier(len(colors))

    def one(i_color):
        i, color = i_color
        with httpx.Client(base_url=server.url, timeout=30) as c:
            body = {"instances": [{"b64": b64(color_image(color, seed=i))}]}
            barrier.wait(10)
            return c.post("/v1/models/model:predict", json=body).json()["predictions"][0]["label"]

    with ThreadPoolExecutor(len(colors)) as pool:
        labels = list(pool.map(one, enumerate(colors)))
    assert labels == colors
    after = http.get("/metrics").text
    runs = metric(after, "drsynth_serve_batch_size_count") - metric(before, "drsynth_serve_batch_size_count")
    instances = metric(after, "drsynth_serve_batch_size_sum") - metric(before, "drsynth_serve_batch_size_sum")
    assert instances == len(colors)
    assert runs < len(colors), "concurrent requests should share onnxruntime runs"


BAD = [
    ("v1 malformed JSON", "/v1/models/model:predict", {"content": b'{"instances": [', "headers": {"content-type": "application/json"}}, 400),
    ("v2 malformed JSON", "/v2/models/model/infer", {"content": b'{"inputs": [', "headers": {"content-type": "application/json"}}, 400),
    ("undecodable image", "/v1/models/model:predict", {"json": {"instances": [{"b64": b64(b"GIF89a broken")}]}}, 400),
    ("wrong tensor shape", "/v1/models/model:predict", {"json": {"instances": [[[0.0] * 5] * 3]}}, 400),
    ("wrong dtype", "/v2/models/model/infer", {"json": {"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "INT8", "data": [0] * 3072}]}}, 400),
    ("too many instances", "/v1/models/model:predict", {"json": {"instances": [{"b64": "AA=="}] * 9}}, 400),
    ("unknown model", "/v1/models/resnet:predict", {"json": {"instances": []}}, 404),
    ("unknown model v2", "/v2/models/resnet/infer", {"json": {"inputs": []}}, 404),
    ("payload over the limit", "/v1/models/model:predict", {"content": b"0" * 300_000}, 413),
    ("chunked payload over the limit", "/v1/models/model:predict", {"content": iter([b"0" * 100_000] * 3)}, 413),
    ("model unload", "/v2/repository/models/model/unload", {}, 404),
]  # fmt: skip


@pytest.mark.parametrize(("what", "path", "kwargs", "status"), BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_4xx_and_the_server_keeps_serving(http, what, path, kwargs, status):
    r = http.post(path, **kwargs)
    assert r.status_code == status, r.text
    assert r.json()["error"]
    good = http.post("/v1/models/model:predict", json={"instances": [{"b64": b64(color_image("blue"))}]})
    assert good.status_code == 200 and good.json()["predictions"][0]["label"] == "blue"


def test_metrics_count_requests_by_outcome(http):
    http.post("/v1/models/model:predict", content=b"{", headers={"content-type": "application/json"})
    text = http.get("/metrics").text
    assert metric(text, "drsynth_serve_requests_total", outcome="client_error", code="400") >= 1
    assert metric(text, "drsynth_serve_requests_total", outcome="ok") >= 1
    assert metric(text, "drsynth_serve_requests_total", outcome="server_error") == 0
    for name in (
        "request_preprocess_seconds_count",
        "request_predict_seconds_count",
        "request_postprocess_seconds_count",
    ):
        assert metric(text, name, model_name="model") >= 1  # kserve's own stage histograms


def _refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=5):
            return False
    except ConnectionRefusedError:
        return True


def test_binds_only_the_given_host(server):
    # All of 127/8 is loopback on Linux: a server on 0.0.0.0 would answer on 127.0.0.2 as well.
    assert not _refused("127.0.0.1", server.port)
    assert _refused("127.0.0.2", server.port)


@pytest.mark.slow
def test_binds_another_loopback_address(model_path, tmp_path):
    srv = ServerProcess(["--model", str(model_path), "--host", "127.0.0.2", "--port", "0"], tmp_path / "log")
    try:
        assert srv.host == "127.0.0.2"
        r = httpx.get(f"{srv.url}/v2/health/ready", timeout=10)
        assert r.json() == {"ready": True}
        assert _refused("127.0.0.1", srv.port)
    finally:
        assert srv.stop()


# ---- CLI errors (in-process: they fail before serving) ---------------------------------------------------


def _run_cli(args, capsys):
    from drsynth.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code, capsys.readouterr().err


def test_serve_missing_model_exits_2(tmp_path, capsys):
    code, err = _run_cli(["serve", "--model", str(tmp_path / "nope.onnx"), "--port", "0"], capsys)
    assert code == 2 and "not found" in err


def test_serve_busy_port_exits_2(model_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, err = _run_cli(["serve", "--model", str(model_path), "--port", str(port)], capsys)
    assert code == 2 and "cannot listen on 127.0.0.1" in err


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--max-payload-bytes", "lots", "expected a size"),
        ("--port", "99999", "port"),
        ("--max-batch", "0", "max_batch"),
    ],
)
def test_serve_invalid_options_exit_2(model_path, capsys, option, value, message):
    code, err = _run_cli(["serve", "--model", str(model_path), option, value], capsys)
    assert code == 2 and message in err


def test_json_error_bodies_are_json(http):
    r = http.post("/v1/models/model:predict", json={"instances": "nope"})
    assert r.status_code == 400
    assert json.loads(r.text)["error"].startswith('"instances" must be a list')
