"""The one private attribute of ``dask.array`` dabc depends on, behind one door.

``dabc.learn`` converts every chunk of a Dask ``X`` to the kernels' input form with
``X.map_blocks(kernel_input, meta=...)`` and tells Dask the chunk type of the result (numpy
array, scipy CSR matrix or CSR array) through ``meta``. That type lives in the private attribute
``dask.array.Array._meta`` (a zero-size example chunk).

Relies on: ``Array._meta`` holding a zero-size array of the chunks' type, read through the
documented function ``dask.array.utils.meta_from_array`` (which is how Dask reads it itself).
Checked on dask 2026.8.0 (the version installed when this was written; both have existed since
dask 2.0).

Fallback, in two steps: without ``meta_from_array``, the attribute ``_meta`` itself; without
that either, ``None``, which lets ``map_blocks`` infer the chunk type by calling the function on
an empty chunk. ``tests/test_compat.py`` checks that all three give the same chunk type.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["chunk_meta"]


def chunk_meta(x: Any, dtype: Any = None) -> Any:
    """A zero-size example of ``x``'s chunks (as ``meta=`` of ``map_blocks`` takes it).

    Parameters
    ----------
    x : dask.array.Array
        The array.
    dtype : numpy dtype, optional
        Cast the example to this dtype.

    Returns
    -------
    array-like or None
        A zero-size numpy array or scipy.sparse matrix of the chunk type, or None when this
        version of Dask offers neither way to read it (``map_blocks`` then infers it).
    """
    try:
        from dask.array.utils import meta_from_array
    except ImportError:  # pragma: no cover - a Dask that removed it
        return chunk_meta_private(x, dtype)
    return meta_from_array(x, dtype=dtype)


def chunk_meta_private(x: Any, dtype: Any = None) -> Any:
    """:func:`chunk_meta` from the attribute ``x._meta`` (the fallback; same parameters)."""
    meta = getattr(x, "_meta", None)
    if meta is not None and dtype is not None and hasattr(meta, "astype"):
        meta = meta.astype(np.dtype(dtype))
    return meta
