#!/usr/bin/env bash
# End-to-end test of drsynth on a local kind cluster:
#   1. create the kind cluster (manifests/overlays/kind/kind-cluster.yaml: host ports 8080 KFP, 8333 S3, ...)
#   2. install Kubeflow Pipelines standalone (manifests/base/kfp, pinned version, with its SeaweedFS)
#   3. install drsynth's object store, monitoring and pipeline settings (manifests/overlays/kind)
#   4. build drsynth's images (make images) and load them into the cluster
#   5. upload paper_study and run it with the quick preset (CPU only: train_gpus=0), wait for it
#   6. print the run's study results and where its report is (read back from the object store)
# Optional: WITH_SERVING=1 also installs KServe, runs train_and_serve and applies manifests/overlays/kind-serving.
#
# Needs: docker, kind, kubectl, make, and the repository's .venv (bash scripts/setup.sh). About 10 GB of
# disk for the images, 8 GB of RAM for the cluster. Re-running reuses the cluster (KEEP_CLUSTER=0 deletes it
# at the end). Not runnable in drsynth's CI (no Docker there); see README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${CLUSTER:-drsynth}
KFP_VERSION=${KFP_VERSION:-2.17.1}            # = the ref in manifests/base/kfp/*/kustomization.yaml
KSERVE_BRANCH=${KSERVE_BRANCH:-release-0.15}  # only with WITH_SERVING=1 (its quick_install.sh, needs helm)
PRESET=${PRESET:-quick}
WITH_SERVING=${WITH_SERVING:-0}
KEEP_CLUSTER=${KEEP_CLUSTER:-1}
BUILD_IMAGES=${BUILD_IMAGES:-1}
TIMEOUT_S=${TIMEOUT_S:-5400}
KFP_HOST=http://127.0.0.1:8080
VENV=${VENV:-.venv}
DRSYNTH="$VENV/bin/drsynth"
# The kind overlay's development keys (manifests/overlays/kind); the host reaches the store on its NodePort.
export MINIO_ENDPOINT=http://127.0.0.1:8333 AWS_ACCESS_KEY_ID=drsynth-kind AWS_SECRET_ACCESS_KEY=drsynth-kind-secret

log() { printf '\n== %s\n' "$*"; }
need() { command -v "$1" >/dev/null 2>&1 || { echo "kind-e2e: $1 is required" >&2; exit 2; }; }
for tool in docker kind kubectl make curl; do need "$tool"; done
[ -x "$DRSYNTH" ] || { echo "kind-e2e: $DRSYNTH missing; run: bash scripts/setup.sh" >&2; exit 2; }
grep -q "ref=${KFP_VERSION}" manifests/base/kfp/kustomization.yaml \
  || { echo "kind-e2e: KFP_VERSION=${KFP_VERSION} differs from manifests/base/kfp" >&2; exit 2; }

cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "kind-e2e: failed (exit $rc); pods not ready:" >&2
    kubectl get pods -A --field-selector=status.phase!=Running,status.phase!=Succeeded 2>/dev/null >&2 || true
  fi
  if [ "$KEEP_CLUSTER" = "0" ]; then kind delete cluster --name "$CLUSTER" || true; fi
}
trap cleanup EXIT

wait_rollout() {  # namespace, then every deployment in it
  local ns=$1
  for d in $(kubectl -n "$ns" get deploy -o name); do
    kubectl -n "$ns" rollout status "$d" --timeout=900s
  done
}

log "1/6 kind cluster $CLUSTER"
if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --config manifests/overlays/kind/kind-cluster.yaml --wait 120s
fi
kubectl config use-context "kind-$CLUSTER"

log "2/6 Kubeflow Pipelines $KFP_VERSION"
kubectl apply -k manifests/base/kfp/cluster-scoped
kubectl wait --for condition=established --timeout=180s crd/applications.app.k8s.io
kubectl apply -k manifests/base/kfp
wait_rollout kubeflow

log "3/6 drsynth object store, monitoring, pipeline settings"
kubectl apply -k manifests/overlays/kind
wait_rollout drsynth
wait_rollout drsynth-monitoring

log "4/6 images"
if [ "$BUILD_IMAGES" = "1" ]; then
  make images
fi
for image in $(make -s -f images/Makefile list); do
  kind load docker-image --name "$CLUSTER" "$image"
done

log "5/6 paper_study, preset $PRESET (CPU: train_gpus=0)"
for _ in $(seq 1 60); do  # the UI proxies the API; it answers once ml-pipeline is up
  curl -fsS "$KFP_HOST/apis/v2beta1/healthz" >/dev/null 2>&1 && break
  sleep 5
done
RUN_NAME="paper-study-${PRESET}-$(date +%Y%m%d-%H%M%S)"
"$DRSYNTH" pipeline submit --host "$KFP_HOST" --pipeline paper_study --preset "$PRESET" \
  --store s3://drsynth --gpus 0 --run-name "$RUN_NAME" --wait --timeout "$TIMEOUT_S"

log "6/6 results"
echo "run $RUN_NAME: study results printed above; report: s3://drsynth/runs/$RUN_NAME/report.html"
echo "  (download: MINIO_ENDPOINT=$MINIO_ENDPOINT ... python -c \"from drsynth.storage import open_store; ...\")"
echo "  Kubeflow UI: $KFP_HOST  (the run's report is the 'report' HTML artifact of the report step)"

if [ "$WITH_SERVING" = "1" ]; then
  log "serving: KServe ($KSERVE_BRANCH, RawDeployment), train_and_serve, InferenceServices"
  need helm
  curl -fsSL "https://raw.githubusercontent.com/kserve/kserve/${KSERVE_BRANCH}/hack/quick_install.sh" \
    -o /tmp/kserve-quick-install.sh
  bash /tmp/kserve-quick-install.sh -r
  SERVE_RUN="train-and-serve-${PRESET}-$(date +%Y%m%d-%H%M%S)"
  "$DRSYNTH" pipeline submit --host "$KFP_HOST" --pipeline train_and_serve --preset "$PRESET" \
    --store s3://drsynth --gpus 0 --run-name "$SERVE_RUN" --wait --timeout "$TIMEOUT_S"
  kubectl apply -k manifests/overlays/kind-serving
  kubectl -n drsynth wait --for=condition=Ready --timeout=600s inferenceservice/drsynth-classifier
  kubectl -n drsynth get inferenceservices
fi
log "done"
