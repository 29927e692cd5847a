"""hashlib_ext: perceptual image hashes and fast Hamming-distance matching.

    import hashlib_ext as hx
    h = hx.hash_image("photo.jpg", "pdq")
    idx = hx.HashIndex("pdq"); idx.add(hx.hash_images(paths, "pdq").hashes)
    idx.search(h, threshold=hx.default_threshold("pdq"))

    robust = hx.RobustIndex(); robust.add(paths)       # crops, padding, captions, ...
    robust.match("reshared.jpg")                        # [(id, score, stage), ...]
"""

from .batch import BatchResult, hash_images
from .clusters import DuplicateCluster, dedup_graph
from .dedup import find_duplicates
from .descriptor import Descriptor, describe
from .errors import (
    AlgorithmMismatchError,
    ChecksumMismatchError,
    DatasetDownloadError,
    DatasetError,
    HashFormatError,
    HashlibExtError,
    HashListOutputError,
    ImageDecodeError,
    ImageTooLargeError,
    IndexFileError,
    MissingDependencyError,
    ServiceError,
    ShardChecksumError,
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
from .robust import AddResult, RobustIndex, RobustMatch
from .sharded import ShardedIndex

__version__ = "0.1.0"

__all__ = [
    "AddResult",
    "Descriptor",
    "MissingDependencyError",
    "ServiceError",
    "RobustIndex",
    "RobustMatch",
    "ShardedIndex",
    "describe",
    "AlgorithmMismatchError",
    "BatchResult",
    "ChecksumMismatchError",
    "DatasetDownloadError",
    "DatasetError",
    "Hash",
    "HashArray",
    "HashFormatError",
    "HashListOutputError",
    "HashIndex",
    "HashlibExtError",
    "ImageDecodeError",
    "ImageTooLargeError",
    "IndexFileError",
    "ShardChecksumError",
    "TransformSpecError",
    "UnknownAlgorithmError",
    "UnsafeArchiveError",
    "UnsupportedImageError",
    "WorkerCrashedError",
    "algorithms",
    "default_threshold",
    "dedup_graph",
    "DuplicateCluster",
    "find_duplicates",
    "hash_image",
    "hash_images",
    "load",
]
