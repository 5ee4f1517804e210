"""manifests/base/serving: the kustomization builds, the InferenceServices use drsynth's serve image and
arguments `drsynth serve` really accepts, their probes hit routes the predictor really serves, and the Triton
one points KServe's Triton runtime (protocol v2) at the repository `drsynth export` writes."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from serve_helpers import make_color_classifier, triton_repository

from drsynth import __version__

REPO = Path(__file__).resolve().parents[1]
SERVING = REPO / "manifests" / "base" / "serving"
pytestmark = pytest.mark.filterwarnings("ignore:ORJSONResponse is deprecated")


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    out = subprocess.run(
        [kubectl, "kustomize", str(SERVING)], check=True, capture_output=True, text=True
    ).stdout
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out) if d}


def test_core_objects_are_valid(objects):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kinds = sorted(k for k, _ in objects)
    assert kinds == ["InferenceService", "InferenceService", "Secret", "ServiceAccount"]
    for (kind, _), doc in objects.items():
        if kind != "InferenceService":  # a CRD: checked structurally below
            kubernetes_validate.validate(doc, "1.30", strict=True)
    secret = objects[("Secret", "drsynth-model-store")]
    assert "serving.kserve.io/s3-endpoint" in secret["metadata"]["annotations"]
    assert objects[("ServiceAccount", "drsynth-serving")]["secrets"] == [{"name": "drsynth-model-store"}]


def test_drsynth_predictor_runs_drsynth_serve(objects, tmp_path):
    import typer.main

    from drsynth.cli import app

    isvc = objects[("InferenceService", "drsynth-classifier")]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/enable-prometheus-scraping"] == "true"
    predictor = isvc["spec"]["predictor"]
    assert predictor["serviceAccountName"] == "drsynth-serving"
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container"
    assert container["image"] == f"ghcr.io/drsynth/drsynth-serve:{__version__}"
    assert container["command"] == ["drsynth"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["STORAGE_URI"].startswith("s3://")

    # The arguments parse with the real command line (typer/click), without serving anything.
    args = container["args"]
    assert args[0] == "serve"
    serve_cmd = typer.main.get_command(app).commands["serve"]
    params = serve_cmd.make_context("serve", list(args[1:])).params
    assert str(params["model"]).startswith("/mnt/models/")  # where KServe's storage initializer puts it
    assert params["host"] == "0.0.0.0" and params["port"] == 8080
    assert container["ports"] == [{"containerPort": params["port"], "protocol": "TCP"}]

    # The probes ask for routes the predictor answers 200 on.
    import httpx

    from drsynth.serve import OnnxPredictor, ServeConfig, build_app

    model = make_color_classifier(tmp_path / "m.onnx")
    predictor_model = OnnxPredictor(params["name"], model)
    predictor_model.load()
    asgi = httpx.ASGITransport(app=build_app(predictor_model, ServeConfig(model_path=model)))

    async def get(path):
        async with httpx.AsyncClient(transport=asgi, base_url="http://pod") as c:
            return await c.get(path)

    for probe in ("readinessProbe", "livenessProbe"):
        http_get = container[probe]["httpGet"]
        assert http_get["port"] == params["port"]
        assert asyncio.run(get(http_get["path"])).status_code == 200
    assert asyncio.run(get(f"/v1/models/{params['name']}")).json()["ready"] is True


def test_triton_predictor_serves_the_exported_repository(objects):
    isvc = objects[("InferenceService", "drsynth-classifier-triton")]
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == "kserve-tritonserver"
    assert model["protocolVersion"] == "v2"
    assert model["modelFormat"] == {"name": "triton", "version": "2"}
    assert model["storageUri"].startswith("s3://") and model["storageUri"].endswith("/")
    assert isvc["spec"]["predictor"]["serviceAccountName"] == "drsynth-serving"
    # The repository `drsynth export --triton-repo` writes holds one model folder; its name is the one
    # the manifest documents in the URL, and KServe's Triton runtime serves the repository root.
    (model_dir,) = [p for p in triton_repository().iterdir() if p.is_dir()]
    assert (model_dir / "config.pbtxt").is_file() and (model_dir / "1" / "model.onnx").is_file()
    assert f'name: "{model_dir.name}"' in (model_dir / "config.pbtxt").read_text()
    assert f"/v2/models/{model_dir.name}/infer" in (SERVING / "triton-predictor.yaml").read_text()
