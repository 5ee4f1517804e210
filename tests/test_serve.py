"""drsynth serve, in-process: the predictor's load/preprocess/predict/postprocess, the request decoder,
the micro-batcher, the hardened kserve app (through ASGI, no socket), and `drsynth predict`."""

from __future__ import annotations

import asyncio
import base64
import json
import logging

import numpy as np
import pytest
from serve_helpers import CLASSES, IMAGE_SIZE, color_image, make_color_classifier

pytest.importorskip("kserve")

from kserve.errors import InvalidInput  # noqa: E402
from kserve.protocol.infer_type import InferInput, InferRequest  # noqa: E402

from drsynth.preprocess import Preprocess, load_image, preprocess_image  # noqa: E402
from drsynth.serve import OnnxPredictor, ServeConfig, build_app  # noqa: E402
from drsynth.serve.batcher import MicroBatcher  # noqa: E402
from drsynth.serve.config import parse_size  # noqa: E402
from drsynth.serve.decode import RequestDecoder  # noqa: E402

PP = Preprocess.for_size(IMAGE_SIZE)
# kserve 0.21's endpoints return ORJSONResponse, which FastAPI now flags as deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:ORJSONResponse is deprecated")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return make_color_classifier(tmp_path_factory.mktemp("serve") / "color.onnx")


@pytest.fixture(scope="module")
def predictor(model_path):
    p = OnnxPredictor("model", model_path, max_batch=8, max_instances=16, max_image_pixels=1_000_000)
    p.load()
    return p


def infer(predictor, body, headers=None):
    async def go():
        response, _ = await predictor(body, headers=headers)
        return response

    return asyncio.run(go())


def v2_request(datatype, shape, data, name="image", request_id="r1"):
    return InferRequest(
        model_name="model",
        infer_inputs=[InferInput(name=name, shape=shape, datatype=datatype, data=data)],
        request_id=request_id,
    )


# ---- lifecycle -------------------------------------------------------------------------------------------


def test_init_stores_only_and_load_makes_ready(model_path, caplog):
    p = OnnxPredictor("m", model_path)
    assert not p.ready and p.classifier is None  # no I/O in the constructor
    with caplog.at_level(logging.INFO, logger="drsynth.serve"):
        assert p.load() is True
    assert p.ready and p.classes == CLASSES
    assert "CPUExecutionProvider" in caplog.text  # what the session really runs on is logged
    assert p.max_batch == 1  # auto: no batching on CPU (measured no faster), 32 on CUDA


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider'")
def test_load_warns_when_cuda_silently_falls_back(model_path, caplog, monkeypatch):
    # Asking this (CPU-only) onnxruntime for CUDA reproduces onnxruntime-gpu's silent fallback.
    import drsynth.serve.model as serve_model

    monkeypatch.setattr(
        serve_model,
        "available_providers",
        lambda prefer_gpu=True: ["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    p = OnnxPredictor("m", model_path)
    with caplog.at_level(logging.INFO, logger="drsynth.serve"):
        p.load()
    assert p.classifier.providers == ["CPUExecutionProvider"]
    assert "fell back to ['CPUExecutionProvider']" in caplog.text
    assert p.max_batch == 1  # the batch default follows what the session really got


def test_load_missing_model_is_a_clear_error(tmp_path):
    from drsynth.errors import ModelError

    with pytest.raises(ModelError, match="not found"):
        OnnxPredictor("m", tmp_path / "none.onnx").load()


# ---- the request path, stage by stage -------------------------------------------------------------------


@pytest.mark.parametrize("color", CLASSES)
def test_stages_v1_image(predictor, color):
    body = {"instances": [{"image_bytes": {"b64": b64(color_image(color))}}]}

    async def go():
        decoded = await predictor.preprocess(body)
        assert decoded.inputs.shape == (1, 3, IMAGE_SIZE, IMAGE_SIZE) and decoded.inputs.dtype == np.float32
        scores = await predictor.predict(decoded)
        assert scores.logits.shape == (1, 3)
        return predictor.postprocess(scores)

    out = asyncio.run(go())["predictions"][0]
    assert out["label"] == color
    assert out["probability"] == max(out["probabilities"].values()) > 0.9
    assert list(out["probabilities"]) == CLASSES
    assert sum(out["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_v1_tensor_matches_image_and_local_onnx(predictor):
    data = color_image("green", fmt="PNG")
    tensor = preprocess_image(load_image(data), PP)
    by_image = infer(predictor, {"instances": [{"b64": b64(data)}]})["predictions"][0]
    by_tensor = infer(predictor, {"instances": [tensor.tolist()]})["predictions"][0]
    local = predictor.classifier.predict_proba([load_image(data)])[0]
    assert by_image["label"] == by_tensor["label"] == "green"
    np.testing.assert_allclose(list(by_tensor["probabilities"].values()), local, atol=1e-6)
    np.testing.assert_allclose(list(by_image["probabilities"].values()), local, atol=1e-6)


def test_v1_several_instances_keep_their_order(predictor):
    order = ["blue", "red", "green", "red"]
    body = {"instances": [{"image_bytes": {"b64": b64(color_image(c, seed=i))}} for i, c in enumerate(order)]}
    assert [p["label"] for p in infer(predictor, body)["predictions"]] == order


def test_v2_bytes_and_fp32(predictor):
    res = infer(predictor, v2_request("BYTES", [2], [b64(color_image("red")), b64(color_image("blue"))]))
    rest, _ = res.to_rest()
    outs = {o["name"]: o for o in rest["outputs"]}
    assert outs["label"]["data"] == ["red", "blue"]
    assert outs["probabilities"]["shape"] == [2, 3]
    assert json.loads(rest["parameters"]["classes"]) == CLASSES
    assert rest["id"] == "r1"

    batch = np.stack([preprocess_image(load_image(color_image(c)), PP) for c in ("green", "blue")])
    res = infer(predictor, v2_request("FP32", list(batch.shape), batch.ravel().tolist(), name="input"))
    rest, _ = res.to_rest()
    assert {o["name"]: o for o in rest["outputs"]}["label"]["data"] == ["green", "blue"]


def test_raw_image_body_and_json_with_a_wrong_content_type(predictor):
    out = infer(predictor, color_image("blue"), headers={"content-type": "image/jpeg"})
    assert out["predictions"][0]["label"] == "blue"
    body = json.dumps({"instances": [{"b64": b64(color_image("red"))}]}).encode()
    out = infer(predictor, body, headers={"content-type": "application/x-www-form-urlencoded"})
    assert out["predictions"][0]["label"] == "red"


# ---- bad requests: one InvalidInput each, with a message that says what was wrong --------------------


def _png_of_size(w, h):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (w, h)).save(buf, format="PNG")
    return buf.getvalue()


def _tiff():
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="TIFF")
    return buf.getvalue()


BAD_V1 = [
    ([], "got a JSON list"),
    ({"inputs": []}, "instances"),
    ({"instances": "x"}, "must be a list"),
    ({"instances": []}, "no instances"),
    ({"instances": [{}] * 17}, "17 instances"),
    ({"instances": [{"b64": "@@@"}]}, "not valid base64"),
    ({"instances": [{"b64": b64(b"hello")}]}, "not a decodable image"),
    ({"instances": [{"b64": b64(b"")}]}, "empty image"),
    ({"instances": [{"b64": b64(color_image("red")[:60])}]}, "instances\\[0\\]"),
    ({"instances": [{"b64": b64(_png_of_size(1200, 1000))}]}, "above this server's limit"),
    ({"instances": [{"b64": b64(_tiff())}]}, "format TIFF is not accepted"),
    ({"instances": [{"image_bytes": "x"}]}, "image_bytes"),
    ({"instances": [{"image_bytes": {"b64": 3}}]}, "image_bytes"),
    ({"instances": [7]}, "got a JSON int"),
    ({"instances": [[1.0, 2.0]]}, "shape \\[3, 32, 32\\], got \\[2\\]"),
    ({"instances": [[[[1.0]] * 32] * 3]}, "shape"),
    ({"instances": [np.full((3, 32, 32), 1e39).tolist()]}, "NaN or infinite"),
    ({"instances": [[["a"] * 32] * 32] * 3}, "float tensor"),
    ({"instances": [[[1, [2]]]]}, "float tensor"),
]


@pytest.mark.parametrize(("body", "message"), BAD_V1, ids=[f"v1-{i}" for i in range(len(BAD_V1))])
def test_bad_v1_requests(predictor, body, message):
    with pytest.raises(InvalidInput, match=message):
        infer(predictor, body)


BAD_V2 = [
    (v2_request("INT64", [1], [1]), "datatype must be BYTES"),
    (v2_request("FP32", [1, 3, 8, 8], [0.0] * 192, name="input"), "shape \\[N, 3, 32, 32\\]"),
    (v2_request("FP32", [1, 3, 32, 32], [0.0] * 5, name="input"), "does not match shape"),
    (v2_request("FP32", [0, 3, 32, 32], [], name="input"), "no instances"),
    (v2_request("FP32", [1, 3, 32, -32], [], name="input"), "non-negative"),
    (v2_request("BYTES", [1, 2], ["a", "b"]), "\\[N\\] or \\[N, 1\\]"),
    (v2_request("BYTES", [2], ["a"]), "does not match shape"),
    (v2_request("BYTES", [1], [5]), "base64 string"),
    (v2_request("BYTES", [1], ["***"]), "not valid base64"),
    (v2_request("BYTES", [1], [b64(b"\x89PNG broken")]), "not a decodable image"),
    (
        InferRequest(
            model_name="model",
            infer_inputs=[InferInput("a", [1], "BYTES", ["x"]), InferInput("b", [1], "BYTES", ["y"])],
        ),
        "exactly one input",
    ),
]


@pytest.mark.parametrize(("request_", "message"), BAD_V2, ids=[f"v2-{i}" for i in range(len(BAD_V2))])
def test_bad_v2_requests(predictor, request_, message):
    with pytest.raises(InvalidInput, match=message):
        infer(predictor, request_)


def test_raw_body_that_is_neither_image_nor_json(predictor):
    with pytest.raises(InvalidInput, match="unsupported content-type 'text/plain'"):
        infer(predictor, b"hello", headers={"content-type": "text/plain"})


def test_decoder_accepts_data_urls():
    dec = RequestDecoder(PP, max_instances=4, max_image_pixels=10**6)
    url = "data:image/jpeg;base64," + b64(color_image("red"))
    assert dec.decode({"instances": [{"b64": url}]}).inputs.shape == (1, 3, IMAGE_SIZE, IMAGE_SIZE)


# ---- micro-batcher ---------------------------------------------------------------------------------------


def _recording_run(batches):
    def run(x):
        batches.append(len(x))
        return x.reshape(len(x), -1).sum(axis=1, keepdims=True)

    return run


def test_batcher_coalesces_concurrent_requests_and_keeps_rows_apart():
    batches = []
    batcher = MicroBatcher(_recording_run(batches), max_batch=8)

    async def go():
        xs = [np.full((n, 2), i, np.float32) for i, n in enumerate([1, 2, 1, 3, 1])]
        outs = await asyncio.gather(*(batcher.submit(x) for x in xs))
        await batcher.close()
        return xs, outs

    xs, outs = asyncio.run(go())
    for x, out in zip(xs, outs, strict=True):
        np.testing.assert_array_equal(out[:, 0], x.sum(axis=1))
    assert sum(batches) == 8 and len(batches) < 5  # fewer runs than requests


def test_batcher_respects_max_batch_and_splits_big_requests():
    batches = []
    batcher = MicroBatcher(_recording_run(batches), max_batch=4)

    async def go():
        outs = await asyncio.gather(*(batcher.submit(np.ones((n, 1), np.float32)) for n in [3, 3, 10]))
        await batcher.close()
        return outs

    outs = asyncio.run(go())
    assert [len(o) for o in outs] == [3, 3, 10]
    assert max(batches) <= 4 and sum(batches) == 16


def test_batcher_wait_window_fills_batches():
    batches = []
    batcher = MicroBatcher(_recording_run(batches), max_batch=16, max_wait_s=0.05)

    async def go():
        async def later(i):
            await asyncio.sleep(0.002 * i)
            return await batcher.submit(np.ones((1, 1), np.float32))

        await asyncio.gather(*(later(i) for i in range(6)))
        await batcher.close()

    asyncio.run(go())
    assert batches == [6]


def test_batcher_failure_reaches_callers_and_worker_survives():
    calls = []

    def run(x):
        calls.append(len(x))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return x

    batcher = MicroBatcher(run, max_batch=4)

    async def go():
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit(np.ones((1, 1), np.float32))
        out = await batcher.submit(np.ones((2, 1), np.float32))
        await batcher.close()
        return out

    assert asyncio.run(go()).shape == (2, 1)


# ---- the hardened app, through ASGI (status codes and messages; the HTTP tests use a real socket) ----


@pytest.fixture(scope="module")
def client(predictor, model_path):
    import httpx

    cfg = ServeConfig(model_path=model_path, max_payload_bytes=64 * 1024)
    app = build_app(predictor, cfg)
    transport = httpx.ASGITransport(app=app)

    def call(method, url, **kw):
        async def go():
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                return await c.request(method, url, **kw)

        return asyncio.run(go())

    return call


def test_app_answers_v1_v2_health_and_metrics(client):
    assert client("GET", "/v2/health/ready").json() == {"ready": True}
    assert client("GET", "/v2/health/live").status_code == 200
    assert client("GET", "/v1/models/model").json() == {"name": "model", "ready": True}
    r = client("POST", "/v1/models/model:predict", json={"instances": [{"b64": b64(color_image("red"))}]})
    assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "red"
    body = {
        "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [b64(color_image("blue"))]}]
    }
    r = client("POST", "/v2/models/model/infer", json=body)
    assert r.status_code == 200
    assert {o["name"]: o for o in r.json()["outputs"]}["label"]["data"] == ["blue"]
    text = client("GET", "/metrics").text
    assert 'request_predict_seconds_count{model_name="model"}' in text  # kserve's histograms
    assert (
        'drsynth_serve_requests_total{code="200",outcome="ok",route="/v1/models/{model_name}:predict"}'
        in text
    )


@pytest.mark.parametrize(
    ("method", "url", "kwargs", "status", "message"),
    [
        ("POST", "/v1/models/model:predict", {"content": b"{nope", "headers": {"content-type": "application/json"}}, 400, "Unrecognized request format"),
        ("POST", "/v2/models/model/infer", {"content": b"{nope", "headers": {"content-type": "application/json"}}, 400, "invalid inference request"),
        ("POST", "/v2/models/model/infer", {"json": {"inputs": [{"name": "x"}]}}, 400, "invalid inference request"),
        ("POST", "/v1/models/other:predict", {"json": {"instances": []}}, 404, "This server serves 'model'"),
        ("POST", "/v2/models/other/infer", {"json": {"inputs": []}}, 404, "does not exist"),
        ("POST", "/v1/models/model:predict", {"content": b"x" * (64 * 1024 + 1)}, 413, "larger than this server's limit"),
        ("POST", "/v2/repository/models/model/unload", {}, 404, "not available"),
        ("POST", "/v2/models/model/versions/1/infer", {"json": {}}, 404, "not available"),
        ("POST", "/v1/models/model:explain", {"json": {}}, 404, "not available"),
        ("POST", "/v2/models/model/infer", {"content": b"{}", "headers": {"content-type": "application/octet-stream", "inference-header-content-length": "zz"}}, 400, "could not decode"),
        ("POST", "/v2/models/model/infer", {"content": b"{}xx", "headers": {"content-type": "application/octet-stream", "inference-header-content-length": "2"}}, 400, "could not decode"),
        ("POST", "/v2/models/model/infer", {"json": {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["x"]}], "outputs": [{"name": "nope"}]}}, 400, "base64"),
    ],
)  # fmt: skip
def test_app_turns_client_mistakes_into_4xx(client, method, url, kwargs, status, message):
    r = client(method, url, **kwargs)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_unknown_requested_output_is_400(client):
    body = {
        "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [b64(color_image("red"))]}],
        "outputs": [{"name": "nope"}],
    }
    r = client("POST", "/v2/models/model/infer", json=body)
    assert r.status_code == 400 and "nope" in r.json()["error"]
    body["outputs"] = [{"name": "label"}]
    r = client("POST", "/v2/models/model/infer", json=body)
    assert [o["name"] for o in r.json()["outputs"]] == ["label"]


def test_model_still_served_after_unload_attempt(client):
    client("POST", "/v2/repository/models/model/unload")
    assert client("GET", "/v2/models/model/ready").json()["ready"] is True


# ---- config ----------------------------------------------------------------------------------------------


def test_parse_size():
    assert parse_size("16MiB") == 16 * 1024 * 1024
    assert parse_size("512k") == 512 * 1024
    assert parse_size("1048576") == 1048576
    with pytest.raises(ValueError, match="expected a size"):
        parse_size("lots")


def test_config_rejects_unknown_and_out_of_range(model_path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        ServeConfig(model_path=model_path, port=70000)
    with pytest.raises(ValidationError):
        ServeConfig(model_path=model_path, model_name="../x")
    with pytest.raises(ValidationError):
        ServeConfig(model_path=model_path, colour="red")


# ---- drsynth predict -------------------------------------------------------------------------------------


def test_predict_images_and_cli(model_path, tmp_path, capsys):
    from drsynth.cli import main
    from drsynth.predict import predict_images

    paths = []
    for c in ("blue", "red"):
        p = tmp_path / f"{c}.png"
        p.write_bytes(color_image(c, fmt="PNG"))
        paths.append(p)
    preds = predict_images(model_path, paths)
    assert [p.label for p in preds] == ["blue", "red"]
    assert all(p.probability > 0.9 for p in preds)

    main(["predict", "--model", str(model_path), "--json", *map(str, paths)])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["label"] for x in lines] == ["blue", "red"]


def test_predict_cli_bad_image_exits_2(model_path, tmp_path, capsys):
    from drsynth.cli import main

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--model", str(model_path), str(bad)])
    assert exit_info.value.code == 2
    assert "bad.jpg" in capsys.readouterr().err
