"""What ``hashlib-ext dedup`` writes: one record per cluster (members, the copy to keep,
distances, the chaining guard's verdict), as JSON or CSV (see :mod:`.dedup_cmd`)."""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._common import discard, error, json_text, output_stream
from ._failures import Failures

CSV_COLUMNS = ("cluster", "id", "key", "keep", "distance", "chained")


@dataclass
class ClusterRecord:
    """One cluster as written: ``members`` (JSON-ready dicts, sorted by id) and
    ``details`` (everything else, edges indexing into ``members``)."""

    members: list[dict[str, Any]]
    details: dict[str, Any]

    @property
    def component(self) -> int:
        return int(self.details.get("component", -1))

    @property
    def split(self) -> bool:
        return bool(self.details.get("split", False))

    @property
    def chained(self) -> bool:
        return bool(self.details.get("chained", False))

    @classmethod
    def build(cls, c: Any, hashes: Any, variants: Any, ids: np.ndarray,
              keys: np.ndarray | None, keep_by: Sequence[str] | None) -> ClusterRecord:
        """From a :class:`~hashlib_ext.clusters.DuplicateCluster` whose members are
        positions into ``hashes`` (named by ``ids`` and ``keys``)."""
        from ..clusters import distances_to

        pos = np.asarray(c.members, dtype=np.int64)
        order = np.argsort(ids[pos], kind="stable")  # members by id, as before
        pos = pos[order]
        where = np.empty_like(order)
        where[order] = np.arange(order.size)
        k = _keeper(pos, keys, keep_by)
        dist = distances_to(hashes, pos, int(pos[k]), variants=variants)
        members = [_member(int(p), ids, keys) | {"keep": i == k, "distance": int(d)}
                   for i, (p, d) in enumerate(zip(pos.tolist(), dist.tolist(), strict=True))]
        edges = sorted((min(int(where[a]), int(where[b])), max(int(where[a]), int(where[b])),
                        int(d)) for a, b, d in c.edges)
        details = {"size": len(members), "keep": _name(int(pos[k]), ids, keys),
                   "diameter": c.diameter, "diameter_exact": c.diameter_exact,
                   "diameter_bound": c.diameter_bound, "chained": c.chained,
                   "component": c.component, "split": c.split, "links": c.links,
                   "edges": [list(e) for e in edges]}
        return cls(members, details)

    @classmethod
    def robust(cls, positions: list[int], best: dict[tuple[int, int], tuple[int, int]],
               keys: np.ndarray, keep_by: Sequence[str] | None) -> ClusterRecord:
        """A ``--robust`` cluster: image positions; ``best`` the matched pairs."""
        pos = np.asarray(positions, dtype=np.int64)
        ids = np.arange(len(keys), dtype=np.int64)
        k = _keeper(pos, keys, keep_by)
        members = [_member(int(p), ids, keys) | {"keep": i == k}
                   for i, p in enumerate(pos.tolist())]
        inside = set(positions)
        links = sum(1 for a, b in best if a in inside and b in inside)
        return cls(members, {"size": len(members), "keep": keys[pos[k]], "links": links})


def _member(pos: int, ids: np.ndarray, keys: np.ndarray | None) -> dict[str, Any]:
    m: dict[str, Any] = {"id": int(ids[pos])}
    if keys is not None and keys[pos] is not None:
        m["key"] = keys[pos]
    return m


def _name(pos: int, ids: np.ndarray, keys: np.ndarray | None) -> Any:
    """The key of an item where it has one, else its id."""
    if keys is not None and keys[pos] is not None:
        return keys[pos]
    return int(ids[pos])


def _keeper(pos: np.ndarray, keys: np.ndarray | None, keep_by: Sequence[str] | None) -> int:
    """Index (into ``pos``) of the member to keep, from what is known of its file."""
    from ..keeper import DEFAULT_KEEP_BY, FileFacts, choose_keeper, file_facts

    facts = [file_facts(str(keys[p])) if keys is not None and keys[p] is not None
             else FileFacts() for p in pos.tolist()]
    return choose_keeper(facts, keep_by or DEFAULT_KEEP_BY)


def write_clusters(args: argparse.Namespace, fmt: str, head: dict[str, Any], items: int,
                   failures: Failures, records: list[ClusterRecord], *, nothing: bool,
                   extra: dict[str, Any] | None = None) -> bool:
    """Write the clusters (sorted by first id) to ``--output`` or stdout; False when the
    output could not be written (said on stderr). ``nothing``: no input could be read, so
    an existing output file is left as it was."""
    from ..keeper import DEFAULT_KEEP_BY

    records.sort(key=lambda r: r.members[0]["id"])
    try:
        with output_stream(args.output) as out:
            if fmt == "json":
                doc = dict(head) | {"keep_by": list(args.keep_by or DEFAULT_KEEP_BY),
                                    "items": items, "failed": len(failures)}
                text = json_text(doc)[:-1]
                out.write(text + ', "failures": [')  # one record per line
                out.write(",".join("\n  " + json_text(f) for f in failures.records()))
                out.write("\n], " if failures else "], ")
                out.write('"clusters": [')
                out.write(",".join("\n  " + json_text(r.members) for r in records))
                out.write("\n], " if records else "], ")
                out.write('"details": [')
                out.write(",".join("\n  " + json_text({"cluster": k} | r.details)
                                   for k, r in enumerate(records)))
                out.write("\n]" if records else "]")
                for name, value in (extra or {}).items():
                    out.write(f', "{name}": [')
                    out.write(",".join("\n  " + json_text(v) for v in value))
                    out.write("\n]" if value else "]")
                out.write("}\n")
            else:
                w = csv.writer(out, lineterminator="\n")
                w.writerow(CSV_COLUMNS)
                for k, r in enumerate(records):
                    chained = _cell(r.details.get("chained"))
                    w.writerows([k, m["id"], m.get("key", ""), _cell(m["keep"]),
                                 _cell(m.get("distance")), chained] for m in r.members)
            if nothing:
                discard(out)  # nothing could be read: an existing output stays as it was
    except BrokenPipeError:
        raise
    except OSError as e:
        error(f"cannot write {args.output or 'to stdout'}: {e.strerror or e}")
        return False
    return True


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
