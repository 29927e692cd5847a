"""Benchmark harness: transforms, metrics, report. Import the submodules you need
(``hashlib_ext.evaluate.transforms`` ...); this package imports nothing heavy itself."""

# The algorithm columns `hashlib-ext bench` reports by default (kept here, free of heavy
# imports, so the CLI can build its parser without loading scipy).
DEFAULT_ALGORITHMS = ("ahash", "dhash", "phash", "whash", "pdq", "pdq-dihedral")
