"""Frozen-backbone feature cache: run the backbone once per image and augmentation view, then train the head.

With a frozen backbone (the paper's setup) nearly all of an epoch's time goes into decoding, augmenting and
running the backbone, although only the small head learns. So the trainer records the backbone's output
while it trains on augmented view `v` of every image, and later epochs that use view `v` again read the
recorded features instead: they cost a few matrix products. `cache_views` views are recorded (epoch e uses
view e % cache_views); more views keep more augmentation variety, fewer make more epochs cheap.
Evaluation sets use the deterministic eval transform, so their features are recorded once as well.

Features live in memory (CPU, float16 by default: VGG-16's 4096-d features of 20,000 images take 160 MiB
per view). The frozen backbone runs in eval mode, so a recorded feature equals what the backbone would
compute again for the same augmented image.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


class FeatureStore:
    """Backbone features and labels in memory, by name (`train/view-0`, `val`, `eval/real`, ...)."""

    def __init__(self, dtype: torch.dtype = torch.float16) -> None:
        self.dtype = dtype
        self._data: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._data

    def names(self) -> list[str]:
        return list(self._data)

    def put(self, name: str, features: torch.Tensor, labels: torch.Tensor) -> None:
        if features.ndim != 2 or labels.shape != features.shape[:1]:
            raise ValueError(
                f"expected features [N, F] and labels [N], got {tuple(features.shape)} and {tuple(labels.shape)}"
            )
        self._data[name] = (
            features.detach().to("cpu", self.dtype).contiguous(),
            labels.detach().to("cpu", torch.long),
        )

    def get(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self._data[name]

    def recorder(self, name: str) -> FeatureRecorder:
        """Collect batches during a pass over the data; `finish()` stores them under `name`."""
        return FeatureRecorder(self, name)

    def batches(
        self, name: str, batch_size: int, *, generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Float32 (features, labels) batches of `name`, shuffled when a generator is given."""
        feats, labels = self._data[name]
        n = len(labels)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield feats[idx].float(), labels[idx]

    def num_samples(self, name: str) -> int:
        return len(self._data[name][1])

    @property
    def nbytes(self) -> int:
        return sum(f.nbytes + y.nbytes for f, y in self._data.values())


class FeatureRecorder:
    """Appends (features, labels) batches; stores the concatenation when the pass is complete."""

    def __init__(self, store: FeatureStore, name: str) -> None:
        self.store, self.name = store, name
        self._features: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []

    def __call__(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self._features.append(features.detach().to("cpu", self.store.dtype))
        self._labels.append(labels.detach().to("cpu", torch.long))

    def finish(self) -> None:
        """Store what was recorded; an empty pass stores nothing (the next epoch will record again)."""
        if self._features:
            self.store.put(self.name, torch.cat(self._features), torch.cat(self._labels))
        self._features, self._labels = [], []
