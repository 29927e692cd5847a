"""Request and response helpers shared by the routes: JSON in and out, parameters, image
bodies (raw or multipart), and the write check."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .auth import check_write
from .errors import bad_request

try:  # orjson is faster on the match path; the standard library does the same job
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None  # type: ignore[assignment]

JSON_TYPE = "application/json"
IMAGE_FIELDS = ("file", "image")


def loads(body: bytes) -> Any:
    """Parse a JSON body (400 when it is not JSON)."""
    if not body:
        raise bad_request("empty body: expected JSON")
    try:
        if _orjson is not None:
            return _orjson.loads(body)
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise bad_request(f"malformed JSON: {str(e)[:200]}") from None


def dumps(obj: Any) -> bytes:
    if _orjson is not None:
        return _orjson.dumps(obj)
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> Response:
    return Response(dumps(obj), status_code=status, media_type=JSON_TYPE, headers=headers)


def is_json(request: Request) -> bool:
    ctype = request.headers.get("content-type", "")
    base = ctype.split(";")[0].strip().lower()
    return base == JSON_TYPE or base.endswith("+json")


async def json_body(request: Request) -> Any:
    """The request's JSON body (a JSON content type is required)."""
    if not is_json(request):
        from .errors import unsupported_media_type

        raise unsupported_media_type("expected a JSON body (Content-Type: application/json)")
    return loads(await request.body())


def require_write(request: Request) -> None:
    check_write(request.app.state.service.config.token,
                request.headers.get("authorization"))


def int_param(request: Request, name: str, lo: int, hi: int,
              default: int | None = None) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise bad_request(f"{name} must be an integer, got {text[:40]!r}") from None
    if not lo <= value <= hi:
        raise bad_request(f"{name} must be {lo}..{hi}, got {value}")
    return value


def float_param(request: Request, name: str, lo: float, hi: float) -> float | None:
    text = request.query_params.get(name)
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise bad_request(f"{name} must be a number, got {text[:40]!r}") from None
    if not lo <= value <= hi:
        raise bad_request(f"{name} must be {lo:g}..{hi:g}, got {value:g}")
    return value


def bool_param(request: Request, name: str, default: bool) -> bool:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise bad_request(f"{name} must be true or false, got {text[:40]!r}")


def list_param(request: Request, name: str) -> list[str] | None:
    """A comma-separated (or repeated) parameter as a list, None when absent."""
    values = request.query_params.getlist(name)
    if not values:
        return None
    out = [v.strip() for text in values for v in text.split(",") if v.strip()]
    return out or None


async def upload_bytes(request: Request, what: str = "image") -> tuple[bytes, str | None]:
    """The uploaded file: a multipart field ``file`` (or ``image``), else the raw body;
    with the multipart file name (None for a raw body)."""
    ctype = request.headers.get("content-type", "").lower()
    if ctype.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=16)
        try:
            for field in IMAGE_FIELDS:
                part = form.get(field)
                if part is not None and not isinstance(part, str):
                    data = await part.read()
                    if not data:
                        raise bad_request(f"the uploaded {what} is empty")
                    return data, part.filename
            raise bad_request(f"multipart upload without a 'file' field holding the {what}")
        finally:
            await form.close()
    data = await request.body()
    if not data:
        raise bad_request(f"no {what} in the request body (send it raw, or as the multipart "
                         "field 'file')")
    return data, None
