"""manifests/base/monitoring: the kustomization builds valid objects, the scrape configuration really scrapes
(a real Prometheus on loopback, fed a real Pushgateway and a step's /metrics), and every dashboard query
runs against it and finds the series drsynth pushes.

The Debian `prometheus` build has no Kubernetes service discovery, so the test swaps each job's
`kubernetes_sd_configs` for static targets that carry the same `__meta_kubernetes_*` labels a cluster
would give them: the relabelling rules themselves run unchanged.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
import yaml
from metrics_helpers import debian_binary, free_port, http_get, serving_process
from metrics_helpers import pushgateway as start_pushgateway

from drsynth import metrics

REPO = Path(__file__).resolve().parents[1]
MONITORING = REPO / "manifests" / "base" / "monitoring"
DASHBOARD = MONITORING / "dashboards" / "drsynth.json"
SCRAPE_CONFIG = MONITORING / "prometheus.yml"

# Series the dashboard may use that other code defines: drsynth serve (drsynth.serve.metrics), KServe's
# stage histograms, and Triton's counters (the Triton serving route).
SERVE_SERIES = {
    "drsynth_serve_requests_total",
    "drsynth_serve_request_seconds_bucket",
    "drsynth_serve_instances_total",
    "drsynth_serve_batch_size_sum",
    "drsynth_serve_batch_size_count",
}
EXTERNAL_SERIES = {
    "request_predict_seconds_bucket",
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_request_duration_us",
}


def _kustomize(path: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    out = subprocess.run([kubectl, "kustomize", str(path)], check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _by_kind(docs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def _dashboard_exprs() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]


def _drsynth_series() -> set[str]:
    """Every series name drsynth's steps export (histograms as their _bucket/_sum/_count)."""
    names = set()
    for name, (kind, _labels) in metrics.metric_names().items():
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        else:
            names.add(name)
    return names


def test_kustomization_builds_valid_objects():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    docs = _kustomize(MONITORING)
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30", strict=True)
    objs = _by_kind(docs)
    kinds = sorted({k for k, _ in objs})
    assert kinds == sorted(
        {
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Service",
            "Deployment",
        }
    )
    assert {n for k, n in objs if k == "Deployment"} == {"pushgateway", "prometheus", "grafana"}
    assert all(
        d["metadata"].get("namespace") == "drsynth-monitoring"
        for d in docs
        if d["kind"] != "Namespace" and not d["kind"].startswith("Cluster")
    )

    configmaps = {n: d for (k, n), d in objs.items() if k == "ConfigMap"}
    dash_cm = next(d for n, d in configmaps.items() if n.startswith("grafana-dashboards-drsynth-"))
    assert dash_cm["metadata"]["labels"]["grafana_dashboard"] == "1"  # the kube-prometheus-stack sidecar
    assert json.loads(dash_cm["data"]["drsynth.json"]) == json.loads(DASHBOARD.read_text())
    prom_cm = next(d for n, d in configmaps.items() if n.startswith("prometheus-config-"))
    assert prom_cm["data"]["prometheus.yml"] == SCRAPE_CONFIG.read_text()
    # every ConfigMap a Deployment mounts exists under its generated (hashed) name
    for (kind, _name), d in objs.items():
        if kind == "Deployment":
            for vol in d["spec"]["template"]["spec"].get("volumes", []):
                if "configMap" in vol:
                    assert vol["configMap"]["name"] in configmaps

    svc = objs[("Service", "pushgateway")]
    assert svc["spec"]["ports"] == [{"name": "http", "port": 9091, "targetPort": "http"}]


def test_prometheus_operator_component_selects_the_pushgateway_and_predictors():
    docs = _by_kind(_kustomize(MONITORING / "prometheus-operator"))
    service = _by_kind(_kustomize(MONITORING))[("Service", "pushgateway")]
    sm = docs[("ServiceMonitor", "drsynth-pushgateway")]
    assert sm["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert sm["spec"]["endpoints"][0]["honorLabels"] is True
    pm = docs[("PodMonitor", "drsynth-kserve-predictors")]
    assert pm["spec"]["selector"]["matchExpressions"][0]["key"] == "serving.kserve.io/inferenceservice"
    # the PodMonitor relabels exactly as the plain scrape config does
    plain = yaml.safe_load(SCRAPE_CONFIG.read_text())
    job = next(j for j in plain["scrape_configs"] if j["job_name"] == "kserve-predictors")
    plain_addr = next(r for r in job["relabel_configs"] if r.get("target_label") == "__address__")
    pm_addr = next(
        r
        for r in pm["spec"]["podMetricsEndpoints"][0]["relabelings"]
        if r.get("targetLabel") == "__address__"
    )
    assert (pm_addr["sourceLabels"], pm_addr["regex"], pm_addr["replacement"]) == (
        plain_addr["source_labels"],
        plain_addr["regex"],
        plain_addr["replacement"],
    )


def test_dashboard_is_well_formed_and_uses_only_known_series():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "drsynth-pipeline"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not (mine & cells), f"panel {p['title']!r} overlaps another"
        cells |= mine
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for must in ("render throughput", "loss", "accuracy", "latency", "error rate"):
        assert must in titles
    known = _drsynth_series() | SERVE_SERIES | EXTERNAL_SERIES
    for title, expr in _dashboard_exprs():
        used = set(re.findall(r"\b(?:drsynth_\w+|request_\w+|nv_\w+)\b", expr))
        assert used, (title, expr)
        assert used <= known, f"{title}: unknown series {used - known}"


def test_serve_series_the_dashboard_uses_exist():
    pytest.importorskip("drsynth.serve.metrics")  # registers drsynth serve's series in the default registry
    from prometheus_client import REGISTRY

    exported = {s.name for fam in REGISTRY.collect() for s in fam.samples} | {
        f"{fam.name}{suffix}"
        for fam in REGISTRY.collect()
        for suffix in ("_total", "_bucket", "_sum", "_count")
    }
    assert exported >= SERVE_SERIES


def _static_scrape_config(pushgateway_addr: str, step_addr: str, decoy_addr: str) -> dict:
    """prometheus.yml with Kubernetes discovery replaced by static targets carrying its meta labels."""
    cfg = copy.deepcopy(yaml.safe_load(SCRAPE_CONFIG.read_text()))
    cfg["global"]["scrape_interval"] = "1s"
    host, port = step_addr.rsplit(":", 1)
    targets = {
        "drsynth-pushgateway": [
            {
                "targets": [pushgateway_addr],
                "labels": {
                    "__meta_kubernetes_service_label_app_kubernetes_io_name": "pushgateway",
                    "__meta_kubernetes_endpoint_port_name": "http",
                },
            },
            {
                "targets": [decoy_addr],
                "labels": {  # another Service in the namespace: dropped
                    "__meta_kubernetes_service_label_app_kubernetes_io_name": "grafana",
                    "__meta_kubernetes_endpoint_port_name": "http",
                },
            },
        ],
        "kserve-predictors": [
            {
                "targets": ["10.0.0.1:80"],
                "labels": {  # the pod's declared port; the annotation's wins
                    "__meta_kubernetes_pod_ip": host,
                    "__meta_kubernetes_pod_label_serving_kserve_io_inferenceservice": "cats",
                    "__meta_kubernetes_pod_label_component": "predictor",
                    "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true",
                    "__meta_kubernetes_pod_annotation_prometheus_io_port": port,
                    "__meta_kubernetes_pod_annotation_prometheus_io_path": "/metrics",
                    "__meta_kubernetes_namespace": "models",
                    "__meta_kubernetes_pod_name": "cats-predictor-0",
                },
            },
            {
                "targets": [decoy_addr],
                "labels": {  # annotated, but not a KServe pod: dropped
                    "__meta_kubernetes_pod_ip": "127.0.0.1",
                    "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true",
                    "__meta_kubernetes_pod_annotation_prometheus_io_port": "1",
                },
            },
        ],
        "drsynth-steps": [
            {
                "targets": ["10.0.0.2:80"],
                "labels": {
                    "__meta_kubernetes_pod_ip": host,
                    "__meta_kubernetes_pod_annotation_drsynth_io_metrics_port": port,
                    "__meta_kubernetes_namespace": "kubeflow",
                    "__meta_kubernetes_pod_name": "train-pod",
                },
            },
            {"targets": [decoy_addr], "labels": {"__meta_kubernetes_pod_ip": "127.0.0.1"}},  # no annotation
        ],
    }
    assert {j["job_name"] for j in cfg["scrape_configs"]} == set(targets)
    for job in cfg["scrape_configs"]:
        assert "kubernetes_sd_configs" in job
        del job["kubernetes_sd_configs"]
        job["static_configs"] = targets[job["job_name"]]
    return cfg


def _query(prom: str, expr: str) -> list[dict]:
    body = json.loads(http_get(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})))
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


@pytest.mark.slow
def test_prometheus_scrapes_pushgateway_and_pods_and_dashboard_queries_find_the_series(tmp_path, monkeypatch):
    # optional: scripts/setup.sh installs only the Pushgateway (the Prometheus package starts a service)
    prometheus = debian_binary("prometheus", "prometheus", required_in_ci=False)
    run = f"test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DRSYNTH_RUN_ID", run)
    monkeypatch.setenv("DRSYNTH_INSTANCE", "pod-a")
    monkeypatch.setattr(metrics, "_config", {})

    with start_pushgateway() as gateway, metrics.step("evaluate", port=0, addr="127.0.0.1") as pulled:
        pulled.accuracy.labels("pulled").set(0.25)
        # one finished step of every area in the gateway, as a pipeline run leaves them
        with metrics.step(
            "render", pushgateway=gateway, task="render-0", push_interval_s=0, timeout_s=15
        ) as m:
            m.planned.set(8)
            m.images.labels("cat").inc(6)
            m.skipped.inc(2)
            m.image_seconds.observe(0.03)
            m.occlusion_retries.inc()
            m.failed_subjects.labels("cat").inc()
        with metrics.step("package", pushgateway=gateway, push_interval_s=0, timeout_s=15) as m:
            m.samples.inc(8)
            m.shards_uploaded.inc()
            m.bytes_uploaded.inc(4096)
            m.upload_seconds.observe(0.2)
        with metrics.step("train", pushgateway=gateway, push_interval_s=0, timeout_s=15) as m:
            m.epochs_planned.set(2)
            m.observe_epoch(1, "train", loss=0.9, accuracy=0.6)
            m.observe_epoch(1, "val", loss=1.1, accuracy=0.5)
            m.learning_rate.set(0.001)
            m.images.inc(32)
            m.gpu_memory_bytes.labels("allocated").set(1e9)  # as observe_gpu_memory would on CUDA
        with metrics.step("evaluate", pushgateway=gateway, push_interval_s=0, timeout_s=15) as m:
            m.accuracy.labels("real").set(0.7)
            m.images.labels("real").inc(40)

        port = free_port()
        prom = f"http://127.0.0.1:{port}"
        cfg = _static_scrape_config(
            gateway.removeprefix("http://"), f"127.0.0.1:{pulled.port}", f"127.0.0.1:{free_port()}"
        )
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(cfg))
        args = [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        with serving_process(args, f"{prom}/-/ready", "Prometheus"):
            deadline = time.monotonic() + 30
            while True:  # three scrapes of each kept target, so rate() has points
                up = _query(prom, "count_over_time(up[1m]) >= 3")
                if len(up) == 3:
                    break
                assert time.monotonic() < deadline, f"targets not scraped: {up}"
                time.sleep(0.5)

            targets = json.loads(http_get(f"{prom}/api/v1/targets"))["data"]
            active = {(t["labels"]["job"], t["scrapeUrl"]) for t in targets["activeTargets"]}
            assert active == {
                ("drsynth-pushgateway", f"{gateway}/metrics"),
                ("kserve-predictors", f"http://127.0.0.1:{pulled.port}/metrics"),
                ("drsynth-steps", f"http://127.0.0.1:{pulled.port}/metrics"),
            }
            assert all(t["health"] == "up" for t in targets["activeTargets"])
            assert len(targets["droppedTargets"]) == 3

            # honor_labels: the pushed grouping labels survive, not the Pushgateway's own job/instance
            (row,) = _query(prom, f'drsynth_render_images_total{{run_id="{run}", class="cat"}}')
            assert row["metric"]["job"] == "drsynth"
            assert (row["metric"]["task"], row["metric"]["instance"]) == ("render-0", "pod-a")
            assert float(row["value"][1]) == 6
            (row,) = _query(prom, 'drsynth_evaluate_accuracy{job="kserve-predictors"}')
            assert row["metric"]["inferenceservice"] == "cats"
            assert row["metric"]["namespace"] == "models"
            (row,) = _query(prom, 'drsynth_evaluate_accuracy{job="drsynth-steps"}')
            assert row["metric"]["pod"] == "train-pod"

            # every dashboard query runs; every panel over the batch steps finds this run's series
            found: dict[str, bool] = {}
            for title, expr in _dashboard_exprs():
                concrete = expr.replace("$run", run).replace("$__rate_interval", "1m")
                found[title] = found.get(title, False) or bool(_query(prom, concrete))
            batch_panels = {t for t, e in _dashboard_exprs() if "$run" in e}
            assert batch_panels and all(found[t] for t in batch_panels), {t: found[t] for t in batch_panels}
            (progress,) = _query(
                prom, next(e for t, e in _dashboard_exprs() if t == "Render progress").replace("$run", run)
            )
            assert float(progress["value"][1]) == 1.0
