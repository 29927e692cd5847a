"""``POST /v1/hash`` and ``POST /v1/match``: hash an image; match an image or hashes.

The match of hashes (a JSON body) is the hot path: the body is parsed with orjson (or the
standard library) without a pydantic model, the hex is turned into one numpy array in a
single call, and the searches run in a search thread (the index's compiled kernels release
the GIL, so the event loop goes on parsing the next requests meanwhile).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from ..hashers import algorithms, default_threshold, expected_bits
from . import schemas, worker
from .banks import HashBank, RobustBank
from .errors import bad_request
from .http import (
    bool_param,
    float_param,
    int_param,
    is_json,
    json_response,
    list_param,
    loads,
    upload_bytes,
)
from .state import Service
from .uploads import codes_from_hex

router = APIRouter(prefix="/v1", tags=["matching"])


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _check_algorithm(name: Any) -> str:
    if not isinstance(name, str) or name not in algorithms():
        raise bad_request(f"unknown algorithm {str(name)[:40]!r}; known: "
                         f"{', '.join(algorithms())}")
    return name


def _threshold(value: Any, bits: int, algorithm: str | None) -> int:
    if value is None:
        return default_threshold(algorithm) if algorithm else max(1, bits * 5 // 32)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= bits:
        raise bad_request(f"threshold must be an integer 0..{bits}, got {str(value)[:40]}")
    return value


def query_codes(raw: bytes, rows: int) -> np.ndarray:
    """``rows`` codes from their bytes, as a writable array: a read-only one (what
    ``np.frombuffer`` gives) is another type to the compiled search kernel, which would
    compile a second version of itself at the first image query (seconds of CPU)."""
    return np.frombuffer(raw, np.uint8).reshape(rows, -1).copy()


async def lookup(service: Service, banks: Sequence[HashBank], codes: np.ndarray,
                 threshold: int, limit: int, dihedral: bool = False
                 ) -> list[list[dict[str, Any]]]:
    """Per query code (or per 8 rows with ``dihedral``), the matches in every bank, nearest
    first (ties by bank and id), at most ``limit``, with keys and metadata."""
    nq = codes.shape[0] // 8 if dihedral else codes.shape[0]
    out: list[list[dict[str, Any]]] = [[] for _ in range(nq)]
    for bank in banks:
        found: list[list[Any]]
        if dihedral:
            found = await service.search(
                lambda: bank.search_dihedral(codes, threshold))  # noqa: B023
        else:
            found = await service.batcher.search(bank, codes, threshold)
        wanted = sorted({m[0] for hits in found for m in hits[:limit]})
        keys, metas = bank.describe(wanted)
        info = dict(zip(wanted, zip(keys, metas, strict=True), strict=True))
        for q, hits in enumerate(found):
            rows = out[q]
            for m in hits[:limit]:
                key, meta = info[m[0]]
                row = {"bank": bank.name, "id": m[0], "distance": m[1], "key": key,
                       "metadata": meta}
                if dihedral:
                    row["variant"] = m[2]
                rows.append(row)
    if len(banks) > 1:
        for q in range(nq):
            out[q].sort(key=lambda r: (r["distance"], r["bank"], r["id"]))
            del out[q][limit:]
    return out


def _count(service: Service, algorithm: str, queries: int,
           results: list[list[dict[str, Any]]]) -> None:
    service.metrics.lookups.labels(algorithm).inc(queries)
    per_bank: dict[str, int] = {}
    for rows in results:
        for r in rows:
            per_bank[r["bank"]] = per_bank.get(r["bank"], 0) + 1
    for name, n in per_bank.items():
        service.metrics.matches.labels(name).inc(n)


@router.post("/match", summary="Match hashes (JSON) or an image against the banks",
             openapi_extra=schemas.MATCH)
async def match(request: Request) -> Response:
    service = _service(request)
    if is_json(request):
        return await _match_hashes(service, request)
    return await _match_image(service, request)


async def _match_hashes(service: Service, request: Request) -> Response:
    return json_response(await match_hashes(service, await request.body()))


async def match_hashes(service: Service, raw: bytes) -> dict[str, Any]:
    """The answer to a JSON match request (the body's bytes); raises the typed errors."""
    body = loads(raw)
    if not isinstance(body, dict):
        raise bad_request('expected a JSON object {"algorithm": ..., "hashes": [...]}')
    unknown = set(body) - {"algorithm", "hashes", "threshold", "banks", "max_matches"}
    if unknown:
        raise bad_request(f"unknown field {sorted(unknown)[0]!r}")
    limits = service.config.limits
    algorithm = _check_algorithm(body.get("algorithm", "pdq"))
    bits = expected_bits(algorithm) or 0
    hashes = body.get("hashes")
    if not isinstance(hashes, list) or not hashes:
        raise bad_request('"hashes" must be a non-empty list of hex strings')
    if len(hashes) > limits.max_query_hashes:
        raise bad_request(f"at most {limits.max_query_hashes} hashes per request, got "
                         f"{len(hashes)}")
    codes = codes_from_hex(hashes, bits // 8)
    threshold = _threshold(body.get("threshold"), bits, algorithm)
    names = body.get("banks")
    if names is not None and (not isinstance(names, list) or
                              not all(isinstance(n, str) for n in names)):
        raise bad_request('"banks" must be a list of bank names')
    limit = body.get("max_matches", limits.max_matches)
    if isinstance(limit, bool) or not isinstance(limit, int) or \
            not 1 <= limit <= limits.max_matches:
        raise bad_request(f"max_matches must be 1..{limits.max_matches}")
    banks = service.store.hash_banks(algorithm, names, bits)
    results = await lookup(service, banks, codes, threshold, limit)
    _count(service, algorithm, len(hashes), results)
    return {"algorithm": algorithm, "threshold": threshold, "banks": [b.name for b in banks],
            "results": [{"hash": h.lower(), "matches": m}
                        for h, m in zip(hashes, results, strict=True)]}


async def decode_job(service: Service, request: Request, kind: str,
                  args: tuple[Any, ...]) -> Any:
    """Run a decoding job under the request's deadline (``?timeout=`` may shorten it)."""
    limits = service.config.limits
    timeout = float_param(request, "timeout", 0.001, limits.decode_timeout) \
        or limits.decode_timeout
    started = time.perf_counter()
    pool = service.decoders()
    try:
        return await pool.run(kind, args, timeout)
    except Exception as e:
        service.metrics.decode_errors.labels(getattr(e, "kind", type(e).__name__)).inc()
        raise
    finally:
        service.metrics.decode.labels(kind).observe(time.perf_counter() - started)


async def hash_image_upload(service: Service, request: Request, data: bytes,
                            names: list[str], dihedral: bool) -> dict[str, Any]:
    return await decode_job(service, request, worker.JOB_HASH,
                         (data, names, dihedral, service.config.limits.max_pixels))


async def _match_image(service: Service, request: Request) -> Response:
    data, _ = await upload_bytes(request)
    store = service.store
    names = list_param(request, "banks")
    chosen = [store.get(n) for n in names] if names else list(store.banks.values())
    hash_banks = [b for b in chosen if isinstance(b, HashBank) and b.algorithm]
    wanted = list_param(request, "algorithm")
    algs = sorted({_check_algorithm(a) for a in wanted} if wanted else
                  {b.algorithm for b in hash_banks if b.algorithm} or {"pdq"})
    dihedral = bool_param(request, "dihedral", False)
    if dihedral and "pdq" not in algs:
        raise bad_request("dihedral matching needs PDQ (algorithm=pdq)")
    robust = bool_param(request, "robust", True)
    robust_banks = [b for b in chosen if isinstance(b, RobustBank)] if robust else []
    limits = service.config.limits
    limit = int_param(request, "max_matches", 1, limits.max_matches, limits.max_matches)
    min_quality = int_param(request, "min_quality", 0, 100)
    given_t = int_param(request, "threshold", 0, 1 << 16)
    assert limit is not None
    got = await hash_image_upload(service, request, data, algs, dihedral)
    results = []
    for alg in algs:
        code, quality = got["hashes"][alg]
        bits = len(code) * 8
        threshold = _threshold(given_t if given_t is None else min(given_t, bits), bits, alg)
        banks = [b for b in hash_banks if b.algorithm == alg]
        entry: dict[str, Any] = {"algorithm": alg, "hash": code.hex(), "quality": quality,
                                 "threshold": threshold}
        if min_quality is not None and quality is not None and quality < min_quality:
            entry.update(matches=[], low_quality=True)
            results.append(entry)
            continue
        if alg == "pdq" and dihedral:
            codes = query_codes(got["dihedral"][0], 8)
            found = await lookup(service, banks, codes, threshold, limit, dihedral=True)
        else:
            codes = query_codes(code, 1)
            found = await lookup(service, banks, codes, threshold, limit)
        _count(service, alg, 1, found)
        entry["matches"] = found[0]
        results.append(entry)
    out: dict[str, Any] = {"width": got["width"], "height": got["height"],
                           "banks": [b.name for b in hash_banks], "results": results}
    if robust_banks:
        out["robust"] = await _robust_matches(service, request, data, robust_banks, limit)
    return json_response(out)


async def _robust_matches(service: Service, request: Request, data: bytes,
                          banks: list[RobustBank], limit: int) -> list[dict[str, Any]]:
    descriptor = await decode_job(service, request, worker.JOB_DESCRIBE,
                               (data, True, service.config.limits.max_pixels))
    min_score = int_param(request, "min_score", 1, 1 << 20)

    def run() -> list[dict[str, Any]]:
        rows = []
        for bank in banks:
            found = bank.match(descriptor, min_score, None)[:limit]
            keys = bank.keys([m.id for m in found])
            rows += [{"bank": bank.name, "id": m.id, "score": m.score, "stage": m.stage,
                      "key": k} for m, k in zip(found, keys, strict=True)]
        rows.sort(key=lambda r: (-r["score"], r["bank"], r["id"]))
        return rows[:limit]

    rows = await service.search(run)
    for r in rows:
        service.metrics.matches.labels(r["bank"]).inc()
    return rows


@router.post("/hash", summary="Hash an image (raw body or multipart field 'file')",
             openapi_extra=schemas.HASH)
async def hash_endpoint(request: Request) -> Response:
    service = _service(request)
    data, _ = await upload_bytes(request)
    names = [_check_algorithm(a) for a in (list_param(request, "algorithm") or ["pdq"])]
    names = list(dict.fromkeys(names))
    dihedral = bool_param(request, "dihedral", False)
    got = await hash_image_upload(service, request, data, names, dihedral)
    out: dict[str, Any] = {
        "width": got["width"], "height": got["height"],
        "hashes": {n: {"hash": code.hex(), "bits": len(code) * 8, "quality": q}
                   for n, (code, q) in got["hashes"].items()}}
    if dihedral:
        raw, quals = got["dihedral"]
        codes = np.frombuffer(raw, np.uint8).reshape(8, -1)
        out["dihedral"] = [{"hash": bytes(c).hex(), "quality": None if quals is None
                            else quals[i]} for i, c in enumerate(codes)]
    return json_response(out)
