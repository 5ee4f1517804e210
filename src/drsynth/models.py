"""Classifiers: a torchvision (or small) backbone that yields a feature vector, plus the paper's head.

    image -> backbone -> features [N, F] -> Linear(F, 128) -> ReLU -> Dropout(p) -> Linear(128, n_classes)

Backbones are looked up in an explicit name -> constructor table (never `torchvision.models.__dict__`).
Each torchvision network keeps everything up to, and without, its final ImageNet Linear layer, so pretrained
penultimate layers (VGG's fc7, MobileNetV3's 1280-d layer) stay part of the features.

Weights are `imagenet` (torchvision's, fetched once into the torch hub cache), `none` (random init), or the path
of a local state dict file (`.safetensors`, or a `torch.save` file read with `weights_only=True`) for the full
torchvision model; its final-layer keys are ignored, every other key must match.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tvm

from drsynth.errors import ConfigError, ModelError

IMAGENET = "imagenet"
NO_WEIGHTS = "none"
SMALL_CNN = "small-cnn"


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone: constructor, its ImageNet weights and the final layer to drop."""

    build: Callable[..., nn.Module]
    imagenet: tvm.WeightsEnum | None
    final_layer: str  # dotted path of the ImageNet classification Linear, replaced by Identity


class SmallCNN(nn.Module):
    """Four stride-2 conv blocks and global pooling: a 128-d feature extractor that trains in seconds on CPU."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 4 * width]
        blocks: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:], strict=True):
            blocks += [
                nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(chans[-1], 1000)  # placeholder so the table treats it like the others; dropped

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


BACKBONES: dict[str, BackboneSpec] = {
    "vgg16": BackboneSpec(tvm.vgg16, tvm.VGG16_Weights.DEFAULT, "classifier.6"),
    "resnet18": BackboneSpec(tvm.resnet18, tvm.ResNet18_Weights.DEFAULT, "fc"),
    "resnet50": BackboneSpec(tvm.resnet50, tvm.ResNet50_Weights.DEFAULT, "fc"),
    "mobilenet_v2": BackboneSpec(tvm.mobilenet_v2, tvm.MobileNet_V2_Weights.DEFAULT, "classifier.1"),
    "mobilenet_v3_large": BackboneSpec(
        tvm.mobilenet_v3_large, tvm.MobileNet_V3_Large_Weights.DEFAULT, "classifier.3"
    ),
    "efficientnet_b0": BackboneSpec(tvm.efficientnet_b0, tvm.EfficientNet_B0_Weights.DEFAULT, "classifier.1"),
    "convnext_tiny": BackboneSpec(tvm.convnext_tiny, tvm.ConvNeXt_Tiny_Weights.DEFAULT, "classifier.2"),
    SMALL_CNN: BackboneSpec(SmallCNN, None, "fc"),
}


def backbone_names() -> list[str]:
    return list(BACKBONES)


def default_weights(backbone: str) -> str:
    """`imagenet` for the torchvision backbones, `none` for small-cnn (it has no pretrained weights)."""
    return NO_WEIGHTS if BACKBONES[_check_name(backbone)].imagenet is None else IMAGENET


class Classifier(nn.Module):
    """`backbone` (image -> [N, F] features) and `head`; a frozen backbone stays in eval mode while training."""

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        n_classes: int,
        *,
        hidden: int = 128,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(
            nn.Linear(feature_dim, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_classes),
        )
        self.feature_dim = feature_dim
        self.frozen = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def freeze_backbone(self, frozen: bool = True) -> Classifier:
        """Frozen: no gradients into the backbone, and its batch-norm statistics and dropout stay in eval mode."""
        self.frozen = frozen
        for p in self.backbone.parameters():
            p.requires_grad_(not frozen)
        return self.train(self.training)

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self


def build_model(
    backbone: str,
    n_classes: int,
    *,
    weights: str = IMAGENET,
    hidden: int = 128,
    dropout: float = 0.3,
    frozen: bool = True,
) -> Classifier:
    """Build `backbone` with `weights` (`imagenet`, `none` or a state dict path) and a fresh head."""
    spec = BACKBONES[_check_name(backbone)]
    if n_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got {n_classes}")
    net = spec.build(weights=None) if spec.imagenet is not None else spec.build()
    if weights == IMAGENET:
        net.load_state_dict(_fetch_imagenet(backbone, spec))
    feature_dim = _drop_final_layer(net, spec.final_layer)
    if weights not in (IMAGENET, NO_WEIGHTS):
        _load_file_into(net, backbone, spec.final_layer, weights)
    model = Classifier(net, feature_dim, n_classes, hidden=hidden, dropout=dropout)
    return model.freeze_backbone(frozen)


def _check_name(backbone: str) -> str:
    if backbone not in BACKBONES:
        raise ConfigError(f"unknown backbone {backbone!r}: expected one of {', '.join(BACKBONES)}")
    return backbone


def _fetch_imagenet(backbone: str, spec: BackboneSpec) -> dict[str, torch.Tensor]:
    if spec.imagenet is None:
        raise ConfigError(
            f"backbone {backbone!r} has no ImageNet weights: use --weights none (train it from scratch) "
            "or --weights PATH to a state dict"
        )
    try:
        return spec.imagenet.get_state_dict(progress=False, check_hash=False)
    except Exception as e:  # URLError, socket timeouts, HTTP errors, a truncated download...
        filename = Path(spec.imagenet.url).name
        hub_dir = Path(torch.hub.get_dir()) / "checkpoints"
        raise ModelError(
            f"cannot fetch torchvision's ImageNet weights for {backbone} from {spec.imagenet.url} "
            f"({type(e).__name__}: {e}). On an offline or air-gapped machine either: (1) pass a local state dict, "
            f"`--weights /path/to/{filename}` (the file from that URL, or any torchvision {backbone} state dict); "
            f"or (2) put the file into the torch hub cache, {hub_dir}/{filename} (set TORCH_HOME to move it), "
            f"e.g. bake it into the container image at build time with "
            f"`python -c \"import torchvision; torchvision.models.{spec.build.__name__}(weights='DEFAULT')\"`; "
            "or use --weights none to train from scratch"
        ) from None


def _drop_final_layer(net: nn.Module, final_layer: str) -> int:
    """Replace the ImageNet classification Linear by Identity; return its input width (the feature size)."""
    parent_name, _, attr = final_layer.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    final = getattr(parent, attr) if not attr.isdigit() else parent[int(attr)]
    if not isinstance(final, nn.Linear):
        raise AssertionError(f"{final_layer} is {type(final).__name__}, expected Linear")  # a table bug
    if attr.isdigit():
        parent[int(attr)] = nn.Identity()
    else:
        setattr(parent, attr, nn.Identity())
    return final.in_features


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from `.safetensors` or a `torch.save` file (weights_only=True: no code runs on load)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(
            f"weights file not found: {path} (expected `imagenet`, `none` or the path of a state dict file)"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: object = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelError(
            f"cannot read weights file {path} ({type(e).__name__}: {str(e)[:200]}): expected a state dict "
            "saved with safetensors or torch.save (tensors only)"
        ) from None
    # torchvision-references and Lightning-style checkpoints wrap the state dict
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{path} does not hold a state dict (a mapping of parameter names to tensors)")
    return {str(k).removeprefix("module."): v for k, v in obj.items()}


def _load_file_into(net: nn.Module, backbone: str, final_layer: str, path: str) -> None:
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(final_layer + ".")}
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as e:  # tensor shape mismatches
        raise ModelError(
            f"weights file {path} does not fit backbone {backbone}: {str(e)[:400]}. "
            f"Expected a state dict of torchvision's {backbone}"
        ) from None
    if result.missing_keys or result.unexpected_keys:
        raise ModelError(
            f"weights file {path} does not fit backbone {backbone}: "
            f"{len(result.missing_keys)} missing keys {result.missing_keys[:4]}, "
            f"{len(result.unexpected_keys)} unexpected keys {result.unexpected_keys[:4]}. "
            f"Expected a state dict of torchvision's {backbone} (with or without its final layer `{final_layer}`)"
        )
