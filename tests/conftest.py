"""Shared test fixtures.

`../shared` (beside the checkout) holds small real images, meshes, skies, textures and one set of ImageNet
weights; tests that use it skip cleanly when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

# Fixture plugins other areas reuse: a real SeaweedFS S3 server, tiny render folders and datasets.
pytest_plugins = ["s3_server", "dataset_fixtures"]

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DRSYNTH_SHARED", REPO.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test when it is not there."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} not present (../shared is optional)")
    return p


@pytest.fixture
def shared():
    return shared_path


@pytest.fixture(scope="session", autouse=True)
def _subject_cache(tmp_path_factory):
    """Baked animals go to a fresh per-session folder (set in os.environ, so render worker processes and CLI
    subprocesses use it too): tests never write to ~/.cache, nor depend on what is already there."""
    old = os.environ.get("DRSYNTH_SUBJECT_CACHE")
    os.environ["DRSYNTH_SUBJECT_CACHE"] = str(tmp_path_factory.mktemp("subject-cache"))
    yield
    if old is None:
        os.environ.pop("DRSYNTH_SUBJECT_CACHE", None)
    else:
        os.environ["DRSYNTH_SUBJECT_CACHE"] = old
