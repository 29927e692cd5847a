"""OpenAPI descriptions of the request bodies the handlers read themselves.

The handlers parse bodies without pydantic models (raw images, hash-list files, and JSON
on the match path, where a model costs more than the search), so their bodies are
described here for the schema served at ``/openapi.json``.
"""

from __future__ import annotations

from typing import Any

_HEX = {"type": "string", "pattern": "^[0-9a-fA-F]+$"}
_IMAGE = {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    "image/*": {"schema": {"type": "string", "format": "binary"}},
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary"}}}},
}
_QUERY = {
    "type": "object", "required": ["hashes"],
    "properties": {
        "algorithm": {"type": "string", "default": "pdq"},
        "hashes": {"type": "array", "items": _HEX, "minItems": 1},
        "threshold": {"type": "integer", "minimum": 0,
                      "description": "largest Hamming distance that matches (default: the "
                                     "algorithm's default threshold)"},
        "banks": {"type": "array", "items": {"type": "string"},
                  "description": "banks to search (default: every bank of the algorithm)"},
        "max_matches": {"type": "integer", "minimum": 1},
    },
}
_ADD = {
    "type": "object", "required": ["hashes"],
    "properties": {"hashes": {"type": "array", "items": {"oneOf": [_HEX, {
        "type": "object", "required": ["hash"],
        "properties": {"hash": _HEX, "key": {"type": "string"},
                       "metadata": {"type": "object",
                                    "additionalProperties": {"type": "string"}}}}]}}},
}


def _param(name: str, kind: str, text: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": {"type": kind},
            "description": text}


MATCH: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": _QUERY},
                                                  **_IMAGE}},
    "parameters": [
        _param("banks", "string", "image: comma-separated banks (default all)"),
        _param("algorithm", "string", "image: algorithms to hash with (default: those of "
                                      "the banks)"),
        _param("threshold", "integer", "image: largest distance that matches"),
        _param("dihedral", "boolean", "image: also match the 8 rotations/flips (PDQ)"),
        _param("robust", "boolean", "image: also match robust banks (default true)"),
        _param("min_quality", "integer", "image: skip a PDQ hash of lower quality"),
        _param("min_score", "integer", "image: robust banks' smallest verified score"),
        _param("max_matches", "integer", "matches per query"),
        _param("timeout", "number", "image: seconds the decoding may take (at most the "
                                    "server's limit)"),
    ],
}
HASH: dict[str, Any] = {
    "requestBody": {"required": True, "content": _IMAGE},
    "parameters": [
        _param("algorithm", "string", "comma-separated algorithms (default pdq)"),
        _param("dihedral", "boolean", "also the 8 PDQ rotation/flip hashes"),
        _param("timeout", "number", "seconds the decoding may take"),
    ],
}
CREATE_BANK: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {
        "type": "object", "required": ["name"],
        "properties": {"name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]*$"},
                       "kind": {"type": "string", "enum": ["hash", "robust"]},
                       "algorithm": {"type": "string", "default": "pdq"}}}}}}}
ADD_HASHES: dict[str, Any] = {
    "requestBody": {"required": True, "content": {
        "application/json": {"schema": _ADD},
        "text/plain": {"schema": {"type": "string"}},
        "text/csv": {"schema": {"type": "string"}},
        "application/x-ndjson": {"schema": {"type": "string"}},
        "multipart/form-data": _IMAGE["multipart/form-data"]}},
    "parameters": [_param("format", "string",
                          "hash-list format: hex, csv, tsv, jsonl, json, parquet, te")],
}
REMOVE: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "properties": {
        "ids": {"type": "array", "items": {"type": "integer"}},
        "hashes": {"type": "array", "items": _HEX}}}}}}}
ADD_IMAGE: dict[str, Any] = {
    "requestBody": {"required": True, "content": _IMAGE},
    "parameters": [_param("key", "string", "a key stored with the image (e.g. its URL)"),
                   _param("timeout", "number", "seconds the decoding may take")],
}
