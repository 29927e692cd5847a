"""A software prefetch for compiled (numba) kernels: ``prefetch(array, index)`` asks the
CPU to start loading the cache line of ``array[index]`` and goes on at once.

The MIH kernel verifies thousands of candidates per query, each a random read of a stored
code; issuing the read a dozen candidates ahead keeps more of them in flight, and searches
ran about 13% faster at 10M codes (``benchmarks/service_load.py``'s in-process loop).
Built on LLVM's ``llvm.prefetch`` intrinsic; where this numba/LLVM cannot compile it,
:data:`prefetch` is a no-op that compiles away, and the kernels are exact either way.
Imported only with numba.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["AVAILABLE", "prefetch"]


@intrinsic
def _llvm_prefetch(typingctx: Any, arr: Any, idx: Any) -> Any:
    if not isinstance(arr, types.Array):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        aryty, idxty = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        if isinstance(idxty, types.BaseTuple):
            idxs = cgutils.unpack_tuple(builder, args[1], count=len(idxty))
            kinds: list[Any] = list(getattr(idxty, "types"))  # noqa: B009 - untyped in stubs
            idxs = [context.cast(builder, v, kinds[k], types.intp)
                    for k, v in enumerate(idxs)]
        else:
            idxs = [context.cast(builder, args[1], idxty, types.intp)]
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, idxs, wraparound=False)
        i32 = ir.IntType(32)
        if getattr(ptr.type, "is_opaque", False):  # LLVM 15+: one pointer type
            name = "llvm.prefetch.p0"
        else:
            ptr = builder.bitcast(ptr, ir.IntType(8).as_pointer())
            name = "llvm.prefetch.p0i8"
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, name)
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])  # read, keep in all caches, data
        return context.get_dummy_value()

    return types.void(arr, idx), codegen


@njit(cache=True, nogil=True, inline="always")
def _no_prefetch(arr, idx):  # type: ignore[no-untyped-def]
    return None


@njit(cache=True, nogil=True)
def _probe(a):  # type: ignore[no-untyped-def]
    _llvm_prefetch(a, (0, 0))
    return a[0, 0]


def _works() -> bool:
    """Whether the intrinsic compiles here (checked once per process, on import; the
    compiled probe is cached like the kernels)."""
    try:
        _probe(np.zeros((1, 1), np.uint64))
    except Exception:  # noqa: BLE001 - any failure: fall back to the no-op
        return False
    return True


AVAILABLE = _works()
prefetch = _llvm_prefetch if AVAILABLE else _no_prefetch
