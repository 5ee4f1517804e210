# syntax=docker/dockerfile:1.7
# drsynth's shared base image: Python 3.11 with drsynth, kfp and kfp-kubernetes installed (non-editable),
# the scenario presets inside the package (drsynth/resources/scenarios), and a non-root user.
# Built twice from the repository root (see images/Makefile):
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu   -> drsynth-base:<version>-cpu   (render)
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 -> drsynth-base:<version>-cuda  (train, serve)
# torch/torchvision versions come from constraints.txt, like scripts/setup.sh: nothing may pull another build.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DRSYNTH_CACHE=/tmp/drsynth-cache \
    MPLCONFIGDIR=/tmp/matplotlib

# libgomp: torch's and onnxruntime's OpenMP runtime.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libgomp1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/drsynth
COPY constraints.txt images/pins.txt ./
RUN pip install --index-url "${TORCH_INDEX_URL}" -c constraints.txt torch torchvision

COPY pyproject.toml setup.py README.md ./
COPY src ./src
COPY components ./components
COPY pipelines ./pipelines
COPY assets/scenarios ./src/drsynth/resources/scenarios
RUN pip install -c constraints.txt -c pins.txt ".[pipeline]" \
 && python -c "from drsynth.studies import load_scenario_ref; import drsynth_components, drsynth_pipelines; load_scenario_ref('cats_dogs'); load_scenario_ref('cats_dogs_bikes_cars')" \
 && useradd --create-home --uid 1000 --shell /usr/sbin/nologin drsynth

USER 1000
WORKDIR /home/drsynth
