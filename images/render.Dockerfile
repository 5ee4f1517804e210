# syntax=docker/dockerfile:1.7
# drsynth-render: the base (CPU torch) + headless EGL for pyrender. Components: plan, render, package,
# import, studies, report, publish.
# - CPU nodes: Mesa's EGL (llvmpipe), selected by glvnd through /usr/share/glvnd/egl_vendor.d/50_mesa.json.
# - GPU nodes: NVIDIA's EGL. The NVIDIA container toolkit mounts libEGL_nvidia.so.0 into the container when
#   the pod gets a GPU and NVIDIA_DRIVER_CAPABILITIES includes `graphics`; 10_nvidia.json makes glvnd try it
#   first (a vendor whose library is absent is skipped, so the same image works on both).
ARG BASE=ghcr.io/drsynth/drsynth-base:0.1.0-cpu
FROM ${BASE}

USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends libegl1 libegl-mesa0 libgl1-mesa-dri libgles2 libglvnd0 \
 && rm -rf /var/lib/apt/lists/*
COPY images/10_nvidia.json /usr/share/glvnd/egl_vendor.d/10_nvidia.json
ENV PYOPENGL_PLATFORM=egl \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics
RUN python -c "import os; os.environ['PYOPENGL_PLATFORM']='egl'; from drsynth.render import select_platform; select_platform()"
USER 1000
