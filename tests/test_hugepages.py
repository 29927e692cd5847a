"""Huge-page advice for large arrays: taken where Linux offers it, harmless elsewhere."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from hashlib_ext import hugepages

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def test_small_arrays_are_left_alone():
    assert hugepages.advise(np.ones(1000, dtype=np.uint8)) is False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not THP.exists()
                    or "[never]" in THP.read_text(),
                    reason="needs Linux with transparent huge pages available")
def test_large_array_is_advised_and_keeps_its_contents():
    arr = np.random.default_rng(1).integers(0, 256, hugepages.MIN_BYTES + 12345,
                                            dtype=np.uint8)
    before = arr.copy()
    assert hugepages.advise(arr[7:]) is True  # not page-aligned: whole pages inside only
    assert np.array_equal(arr, before)
