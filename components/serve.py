"""The publish component: the exported model where the KServe InferenceServices read it."""

from kfp import dsl
from kfp.dsl import Input, Model

from drsynth_components.images import RENDER


@dsl.component(**RENDER)
def publish_model(onnx: Input[Model], triton: Input[Model], store_uri: str, prefix: str) -> str:
    """Upload model.onnx to STORE/<prefix>/onnx/ (drsynth's predictor) and the Triton repository to
    STORE/<prefix>/triton/ (KServe's Triton runtime); see manifests/base/serving.

    Args:
        onnx: The exported model (folder with model.onnx).
        triton: The Triton model repository.
        store_uri: The object store (s3://bucket/prefix, or a folder).
        prefix: Where under the store the model goes (the InferenceServices' storageUri).

    Returns:
        The Triton repository's URI.
    """
    from drsynth.steps import publish_model as run

    return run(onnx.path, triton.path, store_uri, prefix)["triton_uri"]
