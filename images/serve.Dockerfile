# syntax=docker/dockerfile:1.7
# drsynth-serve: the CUDA base + KServe + onnxruntime-gpu, for `drsynth serve` (manifests/base/serving).
# onnxruntime-gpu wants a newer protobuf than kserve's gRPC stubs accept: pins.txt holds protobuf at the
# version both import with (the one the dev environment runs the serving tests on).
ARG BASE=ghcr.io/drsynth/drsynth-base:0.1.0-cuda
FROM ${BASE}

USER root
RUN pip uninstall -y onnxruntime \
 && pip install -c /opt/drsynth/constraints.txt -c /opt/drsynth/pins.txt kserve onnxruntime-gpu protobuf \
 && python -c "import kserve, onnxruntime, google.protobuf as pb; print('kserve', kserve.__version__, 'onnxruntime', onnxruntime.__version__, 'protobuf', pb.__version__)" \
 && drsynth serve --help >/dev/null
USER 1000
EXPOSE 8080
