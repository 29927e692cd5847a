"""Shared fixtures: the bundled images, and ../shared/datasets when present (else skip)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "datasets" / "coco-mini"
SHARED = ROOT.parent / "shared" / "datasets"


def bundled_images() -> list[Path]:
    return sorted(BUNDLED.glob("*.jpg"))


def shared_dir(*parts: str) -> Path:
    """A folder under ../shared/datasets, or skip the test when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present (optional shared datasets)")
    return path


@pytest.fixture(scope="session")
def bundled() -> list[Path]:
    paths = bundled_images()
    assert len(paths) >= 24, "bundled images missing from datasets/coco-mini"
    return paths


@pytest.fixture(scope="session")
def coco_sample() -> list[Path]:
    d = shared_dir("coco-sample")
    return sorted(d.rglob("*.jpg"))


@pytest.fixture(scope="session")
def pdq_reference() -> Path:
    return shared_dir("pdq-reference")
