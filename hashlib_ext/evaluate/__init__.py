"""Benchmark harness: transforms, metrics, report. Import the submodules you need
(``hashlib_ext.evaluate.transforms`` ...); this package imports nothing heavy itself."""
