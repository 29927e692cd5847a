"""Bank endpoints: create, list, describe, delete; add hashes (JSON or a hash-list
file) or images; remove hashes; compact. Every change needs the bearer token, is
journalled before it is answered, and is visible to the next request."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from . import schemas, worker
from .banks import HashBank, RobustBank, check_name
from .errors import bad_request, conflict
from .http import is_json, json_body, json_response, loads, require_write, upload_bytes
from .routes_match import decode_job, hash_image_upload, query_codes
from .state import Service
from .uploads import codes_from_hex, format_of, from_file, from_json

router = APIRouter(prefix="/v1/banks", tags=["banks"])
MAX_REMOVE = 1_000_000


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


@router.get("", summary="List the banks with their sizes")
async def list_banks(request: Request) -> Response:
    store = _service(request).store
    return json_response({"banks": [b.stats() for b in store.banks.values()]})


@router.post("", summary="Create a bank (token)", status_code=201,
             openapi_extra=schemas.CREATE_BANK)
async def create_bank(request: Request) -> Response:
    require_write(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise bad_request('expected {"name": ..., "kind": "hash", "algorithm": "pdq"}')
    unknown = set(body) - {"name", "kind", "algorithm"}
    if unknown:
        raise bad_request(f"unknown field {sorted(unknown)[0]!r}")
    name = check_name(body.get("name"))  # type: ignore[arg-type]
    store = _service(request).store
    bank = await run_in_threadpool(store.create, name, body.get("kind", "hash"),
                                   body.get("algorithm"))
    return json_response(bank.stats(), 201)


@router.get("/{name}", summary="A bank's size, journal and layout")
async def bank_stats(request: Request, name: str) -> Response:
    return json_response(_service(request).store.get(name).stats())


@router.delete("/{name}", summary="Delete a bank and its files (token)")
async def delete_bank(request: Request, name: str) -> Response:
    require_write(request)
    await run_in_threadpool(_service(request).store.delete, name)
    return json_response({"deleted": name})


@router.post("/{name}/hashes", summary="Add hashes: JSON, or a hash-list file (token)",
             openapi_extra=schemas.ADD_HASHES)
async def add_hashes(request: Request, name: str) -> Response:
    require_write(request)
    service = _service(request)
    bank = service.store.hash_bank(name)
    nbytes = bank.bits // 8
    if is_json(request) and not request.query_params.get("format"):
        additions = from_json(loads(await request.body()), nbytes)
    else:
        data, filename = await upload_bytes(request, "hash list")
        fmt = request.query_params.get("format") or _format_of_name(filename)
        fmt = format_of(request.headers.get("content-type"), fmt)
        additions = await run_in_threadpool(from_file, data, fmt, bank.algorithm, bank.bits,
                                            (filename or "upload")[:200])
    first, n = await run_in_threadpool(bank.add, additions.codes, additions.keys,
                                       additions.metadata)
    service.metrics.added.labels(bank.name).inc(n)
    return json_response({"bank": bank.name, "added": n, "first_id": first if n else None,
                          "last_id": first + n - 1 if n else None, "count": bank.count()})


def _format_of_name(filename: str | None) -> str | None:
    """The hash-list format a multipart file name implies (None when it implies none)."""
    from ..errors import HashFormatError
    from ..formats import detect_format

    if not filename:
        return None
    try:
        return detect_format(filename)
    except HashFormatError:
        return None


@router.post("/{name}/remove", summary="Remove hashes by id or by hash (token)",
             openapi_extra=schemas.REMOVE)
async def remove_hashes(request: Request, name: str) -> Response:
    require_write(request)
    service = _service(request)
    bank = service.store.hash_bank(name)
    body = await json_body(request)
    if not isinstance(body, dict) or not ({"ids", "hashes"} & set(body)) or \
            set(body) - {"ids", "hashes"}:
        raise bad_request('expected {"ids": [...]} and/or {"hashes": [...]}')
    ids: list[int] = []
    given = body.get("ids", [])
    if not isinstance(given, list) or len(given) > MAX_REMOVE or not all(
            isinstance(i, int) and not isinstance(i, bool) and -(1 << 63) <= i < (1 << 63)
            for i in given):
        raise bad_request(f'"ids" must be a list of at most {MAX_REMOVE} integers')
    ids += given
    if "hashes" in body:
        codes = codes_from_hex(body["hashes"], bank.bits // 8)
        found = await service.search(lambda: bank.search(codes, 0))
        ids += [i for hits in found for i, _ in hits]
    removed = await run_in_threadpool(bank.remove, np.asarray(ids, np.int64))
    service.metrics.removed.labels(bank.name).inc(removed)
    return json_response({"bank": bank.name, "removed": removed, "count": bank.count()})


@router.post("/{name}/images", summary="Hash (or describe) an image and add it (token)",
             openapi_extra=schemas.ADD_IMAGE)
async def add_image(request: Request, name: str) -> Response:
    require_write(request)
    service = _service(request)
    bank = service.store.get(name)
    data, filename = await upload_bytes(request)
    key = request.query_params.get("key") or filename
    limits = service.config.limits
    if isinstance(bank, RobustBank):
        descriptor = await decode_job(service, request, worker.JOB_DESCRIBE,
                                   (data, False, limits.max_pixels))
        ident = await run_in_threadpool(bank.add, data, descriptor, key)
        service.metrics.added.labels(bank.name).inc()
        return json_response({"bank": bank.name, "id": ident, "key": key,
                              "count": bank.count()})
    assert isinstance(bank, HashBank)
    if not bank.algorithm:
        raise conflict(f"bank {name!r} holds raw codes without an algorithm: add hashes")
    got = await hash_image_upload(service, request, data, [bank.algorithm], False)
    code, quality = got["hashes"][bank.algorithm]
    codes = query_codes(code, 1)
    metadata: Any = {"quality": [str(quality)]} if quality is not None else None
    first, _ = await run_in_threadpool(bank.add, codes, [key] if key else None, metadata)
    service.metrics.added.labels(bank.name).inc()
    return json_response({"bank": bank.name, "id": first, "key": key, "hash": code.hex(),
                          "quality": quality, "count": bank.count()})


@router.post("/{name}/compact", summary="Fold the bank's journal into its file now (token)")
async def compact(request: Request, name: str) -> Response:
    require_write(request)
    bank = _service(request).store.get(name)
    done = await run_in_threadpool(bank.compact)
    return json_response({"bank": bank.name, "compacted": done})
