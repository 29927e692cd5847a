"""Error classes: all in hashlib_ext.errors, all exported, old import locations kept."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import hashlib_ext as hx
from hashlib_ext import errors


def _error_classes() -> list[type]:
    return [c for _, c in inspect.getmembers(errors, inspect.isclass)
            if issubclass(c, hx.HashlibExtError) and c.__module__ == errors.__name__]


def test_every_error_class_lives_in_errors_and_is_exported():
    classes = _error_classes()
    assert {c.__name__ for c in classes} >= {
        "HashlibExtError", "UnknownAlgorithmError", "WorkerCrashedError", "IndexFileError",
        "HashFormatError", "DatasetError", "TransformSpecError"}
    for c in classes:
        assert c.__name__ in hx.__all__, c.__name__
        assert getattr(hx, c.__name__) is c


def test_no_error_class_defined_outside_errors():
    import importlib
    import pkgutil

    for info in pkgutil.walk_packages(hx.__path__, "hashlib_ext."):
        if info.name == errors.__name__ or info.name.endswith("__main__"):
            continue
        try:
            mod = importlib.import_module(info.name)
        except ImportError:  # an optional dependency that is not installed
            continue
        for _, c in inspect.getmembers(mod, inspect.isclass):
            if issubclass(c, BaseException) and c.__module__ == mod.__name__:
                pytest.fail(f"{c.__name__} is defined in {mod.__name__}, not in errors.py")


def test_old_import_location_still_works():
    from hashlib_ext.batch import WorkerCrashedError

    assert WorkerCrashedError is hx.WorkerCrashedError


@pytest.mark.parametrize("call", [
    lambda: hx.hash_image(np.zeros((8, 8), np.uint8), "nohash"),
    lambda: hx.hash_image(np.zeros((8, 8), np.uint8), ["pdq", "nohash"]),
    lambda: hx.default_threshold("nohash"),
    lambda: hx.hash_images(["x.jpg"], "nohash"),
    lambda: hx.HashIndex("nohash"),
], ids=["hash_image", "hash_image_list", "default_threshold", "hash_images", "HashIndex"])
def test_unknown_algorithm_is_typed(call):
    with pytest.raises(hx.UnknownAlgorithmError, match="nohash") as info:
        call()
    assert isinstance(info.value, ValueError) and isinstance(info.value, hx.HashlibExtError)
    assert "pdq" in str(info.value)  # the known names are listed
