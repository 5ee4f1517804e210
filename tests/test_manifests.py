"""manifests/: every kustomization builds with `kubectl kustomize`; core Kubernetes objects validate against
the Kubernetes 1.30 schemas (kubernetes-validate, offline); custom resources whose CRDs are not available
offline (TrainJob, InferenceService, ServiceMonitor, PodMonitor) are checked structurally instead. The pieces
agree with each other: kind host ports <-> NodePorts, the store Secret <-> the object store's identities and
Service <-> the pipelines' Secret keys, the Pushgateway URL <-> the monitoring Service, the TrainJob command
<-> `drsynth train`'s real options, image tags <-> the components, the KFP version pin <-> kind-e2e.sh."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from drsynth import __version__

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "manifests"
# Kustomizations that build offline (base/kfp references the KFP release on GitHub: checked separately).
OFFLINE = ["overlays/kind", "overlays/kind-serving", "overlays/gpu", "base/object-store", "base/training",
           "base/serving", "base/monitoring"]
CRDS = {  # custom resources: (apiVersion, kind) checked structurally below
    ("trainer.kubeflow.org/v1alpha1", "TrainJob"),
    ("serving.kserve.io/v1beta1", "InferenceService"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
}


def build(path: str) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    r = subprocess.run([kubectl, "kustomize", str(MANIFESTS / path)], capture_output=True, text=True)
    assert r.returncode == 0, f"kubectl kustomize {path}:\n{r.stderr}"
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def by_key(docs: list[dict]) -> dict[tuple[str, str, str], dict]:
    return {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d for d in docs}


def secret_data(secret: dict) -> dict[str, str]:
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    return data | dict(secret.get("stringData") or {})


@pytest.mark.parametrize("path", OFFLINE)
def test_kustomization_builds_and_validates(path):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    docs = build(path)
    assert docs
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CRDS:
            continue  # no schema offline: structural checks below
        try:  # an unknown apiVersion/kind fails here too (no schema)
            kubernetes_validate.validate(doc, "1.30", strict=True)
        except Exception as e:  # name the object in the failure
            pytest.fail(f"{path}: {doc['kind']}/{doc['metadata']['name']} is invalid: {e}")


def test_kind_overlay_wires_store_pipelines_and_ports():
    from drsynth_pipelines.settings import ENV_CONFIG_MAP, STORE_SECRET, STORE_SECRET_KEYS

    objs = by_key(build("overlays/kind"))
    store = secret_data(objs[("Secret", "kubeflow", STORE_SECRET)])
    assert set(store) == set(STORE_SECRET_KEYS)  # exactly the keys the pipelines map into the pods
    identities = json.loads(secret_data(objs[("Secret", "drsynth", "object-store-s3")])["s3.json"])["identities"]
    creds = [c for i in identities for c in i["credentials"]]
    assert {"accessKey": store["AWS_ACCESS_KEY_ID"], "secretKey": store["AWS_SECRET_ACCESS_KEY"]} in creds
    assert "replace-me" not in json.dumps(creds)
    host, port = store["MINIO_ENDPOINT"].split(":")
    svc = objs[("Service", "drsynth", "object-store")]
    assert host == "object-store.drsynth.svc.cluster.local" and int(port) == svc["spec"]["ports"][0]["port"]
    deploy = objs[("Deployment", "drsynth", "object-store")]
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    assert f"-s3.port={port}" in container["args"] and "-s3.config=/etc/seaweedfs/s3.json" in container["args"]
    assert not container["image"].endswith(":latest")
    # the step metrics go to the monitoring stack's Pushgateway
    env = objs[("ConfigMap", "kubeflow", ENV_CONFIG_MAP)]["data"]["PROMETHEUS_PUSHGATEWAY"]
    pg = objs[("Service", "drsynth-monitoring", "pushgateway")]
    assert env == f"http://pushgateway.drsynth-monitoring.svc.cluster.local:{pg['spec']['ports'][0]['port']}"
    # kind's host ports reach NodePort Services that select real pods
    kind_cfg = yaml.safe_load((MANIFESTS / "overlays/kind/kind-cluster.yaml").read_text())
    mapped = {m["containerPort"]: m for m in kind_cfg["nodes"][0]["extraPortMappings"]}
    node_ports = {p["nodePort"]: s for s in objs.values() if s["kind"] == "Service"
                  and s["spec"].get("type") == "NodePort" for p in s["spec"]["ports"]}
    assert set(mapped) == set(node_ports)
    assert all(m["listenAddress"] == "127.0.0.1" for m in mapped.values())  # dev keys: loopback only
    assert mapped[node_ports_for(node_ports, "object-store-nodeport")]["hostPort"] == 8333
    assert mapped[node_ports_for(node_ports, "ml-pipeline-ui-nodeport")]["hostPort"] == 8080
    for svc in node_ports.values():
        selector = svc["spec"]["selector"]
        if svc["metadata"]["namespace"] == "kubeflow":
            assert selector == {"app": "ml-pipeline-ui"}  # KFP's UI pods (installed by base/kfp)
            continue
        targets = [d for d in objs.values() if d["kind"] == "Deployment"
                   and d["metadata"]["namespace"] == svc["metadata"]["namespace"]
                   and selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert targets, f"{svc['metadata']['name']} selects no pod"


def node_ports_for(node_ports: dict[int, dict], name: str) -> int:
    return next(p for p, s in node_ports.items() if s["metadata"]["name"] == name)


def test_kind_e2e_script_matches_the_manifests():
    script = (REPO / "scripts" / "kind-e2e.sh").read_text()
    version = re.search(r"KFP_VERSION=\$\{KFP_VERSION:-([0-9.]+)\}", script).group(1)
    for k in ("base/kfp/kustomization.yaml", "base/kfp/cluster-scoped/kustomization.yaml"):
        refs = re.findall(r"github\.com/kubeflow/pipelines/manifests/kustomize/\S+\?ref=(\S+)",
                          (MANIFESTS / k).read_text())
        assert refs == [version], k  # KFP standalone, by version, in step with the script
    assert "env/platform-agnostic" in (MANIFESTS / "base/kfp/kustomization.yaml").read_text()
    kind_cfg = yaml.safe_load((MANIFESTS / "overlays/kind/kind-cluster.yaml").read_text())
    assert "--name \"$CLUSTER\" --config manifests/overlays/kind/kind-cluster.yaml" in script
    assert kind_cfg["name"] == re.search(r"CLUSTER=\$\{CLUSTER:-(\S+)\}", script).group(1)
    store = secret_data(by_key(build("overlays/kind"))[("Secret", "kubeflow", "drsynth-store")])
    assert f"AWS_ACCESS_KEY_ID={store['AWS_ACCESS_KEY_ID']}" in script  # the host reads results back
    assert "--gpus 0" in script and "--preset \"$PRESET\"" in script and "PRESET=${PRESET:-quick}" in script
    bash = shutil.which("bash")
    assert subprocess.run([bash, "-n", str(REPO / "scripts" / "kind-e2e.sh")]).returncode == 0
    if shutil.which("shellcheck"):
        r = subprocess.run(["shellcheck", str(REPO / "scripts" / "kind-e2e.sh")], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout


def test_trainjob_runs_drsynth_train_on_gpus():
    import typer.main

    from drsynth.cli import app

    (job,) = [d for d in build("base/training") if d["kind"] == "TrainJob"]
    assert job["apiVersion"] == "trainer.kubeflow.org/v1alpha1"
    assert job["spec"]["runtimeRef"] == {"apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime",
                                         "name": "torch-distributed"}
    trainer = job["spec"]["trainer"]
    assert trainer["image"] == f"ghcr.io/drsynth/drsynth-train:{__version__}"
    assert trainer["numNodes"] >= 1
    gpus = int(trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"])
    assert gpus >= 1 and trainer["resourcesPerNode"]["requests"]["nvidia.com/gpu"] == str(gpus)
    assert trainer["numProcPerNode"] == gpus  # torchrun starts one training process per GPU
    command = trainer["command"]
    assert command[:3] == ["torchrun", "--module", "drsynth"]  # the same code as the pipeline's train step
    train_cmd = typer.main.get_command(app).commands["train"]
    params = train_cmd.make_context("train", list(command[4:])).params  # parses with the real CLI
    assert command[3] == "train" and params["data"].startswith("s3://") and str(params["out"]).startswith("/checkpoints")
    assert params["upload"].startswith("s3://")  # rank 0 keeps the checkpoint in the object store
    env = {e["name"]: e for e in trainer["env"]}
    for key in ("MINIO_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "drsynth-store", "key": key}
    (override,) = job["spec"]["podTemplateOverrides"]
    mounts = {m["mountPath"] for c in override["spec"]["containers"] for m in c["volumeMounts"]}
    assert {"/checkpoints", "/dev/shm"} <= mounts
    claims = {v["persistentVolumeClaim"]["claimName"] for v in override["spec"]["volumes"]
              if "persistentVolumeClaim" in v}
    assert claims <= {d["metadata"]["name"] for d in build("base/training") if d["kind"] == "PersistentVolumeClaim"}


def test_serving_overlays_point_at_the_published_model():
    kind = by_key(build("overlays/kind-serving"))
    isvcs = [d for d in kind.values() if d["kind"] == "InferenceService"]
    assert len(isvcs) == 2 and all(d["metadata"]["namespace"] == "drsynth" for d in isvcs)
    assert all(d["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment" for d in isvcs)
    model_store = secret_data(kind[("Secret", "drsynth", "drsynth-model-store")])
    store = secret_data(by_key(build("overlays/kind"))[("Secret", "kubeflow", "drsynth-store")])
    assert model_store["AWS_ACCESS_KEY_ID"] == store["AWS_ACCESS_KEY_ID"]
    assert model_store["AWS_SECRET_ACCESS_KEY"] == store["AWS_SECRET_ACCESS_KEY"]
    endpoint = kind[("Secret", "drsynth", "drsynth-model-store")]["metadata"]["annotations"][
        "serving.kserve.io/s3-endpoint"]
    assert endpoint == store["MINIO_ENDPOINT"]
    # where train_and_serve publishes (its defaults): store s3://drsynth, prefix models/latest
    triton = kind[("InferenceService", "drsynth", "drsynth-classifier-triton")]
    assert triton["spec"]["predictor"]["model"]["storageUri"] == "s3://drsynth/models/latest/triton/"
    gpu = by_key(build("overlays/gpu"))
    pred = gpu[("InferenceService", "drsynth", "drsynth-classifier")]["spec"]["predictor"]["containers"][0]
    assert pred["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {k for k, _, _ in gpu} >= {"TrainJob", "ServiceMonitor", "PodMonitor", "InferenceService"}
    for d in gpu.values():
        if d["kind"] in ("ServiceMonitor", "PodMonitor"):
            endpoints = d["spec"].get("endpoints") or d["spec"].get("podMetricsEndpoints")
            assert endpoints and d["spec"]["selector"]


def test_images_are_pinned_and_match_the_components():
    from drsynth_components import IMAGE_RENDER, IMAGE_SERVE, IMAGE_TRAIN

    images = REPO / "images"
    listed = subprocess.run(["make", "-s", "-f", "images/Makefile", "list"], cwd=REPO, capture_output=True,
                            text=True)
    if listed.returncode == 0:
        assert listed.stdout.split() == [IMAGE_RENDER, IMAGE_TRAIN, IMAGE_SERVE]
    for name in ("base", "render", "train", "serve"):
        text = (images / f"{name}.Dockerfile").read_text()
        for ref in re.findall(r"^ARG (?:PYTHON_IMAGE|BASE)=(\S+)", text, re.M):
            assert ":" in ref and not ref.endswith(":latest"), (name, ref)
        assert "USER 1000" in text  # not root at run time
    pins = dict(line.split("==") for line in (images / "pins.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    from importlib.metadata import version

    for pkg in ("kfp", "kfp-kubernetes", "kserve", "onnxruntime", "protobuf"):
        assert pins[pkg] == version(pkg), f"images/pins.txt {pkg}=={pins[pkg]} but the tested one is {version(pkg)}"
    assert pins["onnxruntime-gpu"] == pins["onnxruntime"]
    assert "onnxruntime-gpu" in (images / "serve.Dockerfile").read_text()
    assert "kserve" in (images / "serve.Dockerfile").read_text()
    assert "libegl-mesa0" in (images / "render.Dockerfile").read_text()
    assert "10_nvidia.json" in (images / "render.Dockerfile").read_text()
