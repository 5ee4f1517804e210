"""The container images the components run on (built from images/, tagged with drsynth's version)."""

from drsynth import __version__

REGISTRY = "ghcr.io/drsynth"
IMAGE_RENDER = f"{REGISTRY}/drsynth-render:{__version__}"  # drsynth + Mesa EGL (NVIDIA's EGL on GPU nodes)
IMAGE_TRAIN = f"{REGISTRY}/drsynth-train:{__version__}"  # drsynth + CUDA PyTorch + onnxruntime-gpu
IMAGE_SERVE = f"{REGISTRY}/drsynth-serve:{__version__}"  # drsynth + onnxruntime-gpu + kserve

# Every component: no pip install at run time (kfp and drsynth are in the images).
RENDER = {"base_image": IMAGE_RENDER, "install_kfp_package": False}
TRAIN = {"base_image": IMAGE_TRAIN, "install_kfp_package": False}
SERVE = {"base_image": IMAGE_SERVE, "install_kfp_package": False}
