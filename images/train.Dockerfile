# syntax=docker/dockerfile:1.7
# drsynth-train: the base built with CUDA PyTorch + onnxruntime-gpu (evaluation on the GPU; it loads the CUDA
# libraries the torch wheels bring). Components: train, export, evaluate (+ heatmaps). The same training code
# runs under torchrun in the Kubeflow Trainer TrainJob (manifests/base/training).
ARG BASE=ghcr.io/drsynth/drsynth-base:0.1.0-cuda
FROM ${BASE}

USER root
RUN pip uninstall -y onnxruntime \
 && pip install -c /opt/drsynth/constraints.txt -c /opt/drsynth/pins.txt onnxruntime-gpu protobuf \
 && python -c "import onnxruntime, torch; print('onnxruntime', onnxruntime.__version__, onnxruntime.get_available_providers(), 'torch', torch.__version__, torch.version.cuda)"
USER 1000
