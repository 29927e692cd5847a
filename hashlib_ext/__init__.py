"""hashlib_ext: perceptual image hashes and fast Hamming-distance matching.

    import hashlib_ext as hx
    h = hx.hash_image("photo.jpg", "pdq")
    idx = hx.HashIndex("pdq"); idx.add(hx.hash_images(paths, "pdq").hashes)
    idx.search(h, threshold=hx.default_threshold("pdq"))
"""

from .batch import BatchResult, hash_images
from .dedup import find_duplicates
from .errors import (
    AlgorithmMismatchError,
    ChecksumMismatchError,
    DatasetDownloadError,
    DatasetError,
    HashFormatError,
    HashlibExtError,
    ImageDecodeError,
    ImageTooLargeError,
    IndexFileError,
    TransformSpecError,
    UnknownAlgorithmError,
    UnsafeArchiveError,
    UnsupportedImageError,
    WorkerCrashedError,
)
from .hash import Hash, HashArray
from .hashers import algorithms, default_threshold, hash_image
from .imageio import load
from .index import HashIndex

__version__ = "0.1.0"

__all__ = [
    "AlgorithmMismatchError",
    "BatchResult",
    "ChecksumMismatchError",
    "DatasetDownloadError",
    "DatasetError",
    "Hash",
    "HashArray",
    "HashFormatError",
    "HashIndex",
    "HashlibExtError",
    "ImageDecodeError",
    "ImageTooLargeError",
    "IndexFileError",
    "TransformSpecError",
    "UnknownAlgorithmError",
    "UnsafeArchiveError",
    "UnsupportedImageError",
    "WorkerCrashedError",
    "algorithms",
    "default_threshold",
    "find_duplicates",
    "hash_image",
    "hash_images",
    "load",
]
