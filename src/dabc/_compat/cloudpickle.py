"""cloudpickle that keeps a function's file name, so a model's traceback names the user's file.

dabc ships a generation's work (the models, priors, distance) to worker processes, and
stores code in a run's database, with cloudpickle. A function defined in a script (module
``__main__``) or a notebook is pickled by value: its code object travels. cloudpickle >= 3.1
replaces the code's file name by ``"<dynamic-code>"`` (to make the bytes independent of where
the function was defined), so a model that raises in a worker shows
``File "<dynamic-code>", line 6, in model`` and no source line.

:func:`dumps` pickles as ``cloudpickle.dumps`` does, except that code objects keep their
``co_filename`` and carry the source lines of that file (when Python's :mod:`linecache` has
them: a real file, or a notebook cell that IPython registered). Unpickling registers those
lines in :mod:`linecache` under the file name when nothing is cached for it there, so the
traceback shows the user's file, line and source even on a machine without the file.
Unpickling needs only cloudpickle and this module, which workers import anyway.

Relies on: ``cloudpickle.Pickler`` being a :class:`pickle.Pickler` whose class attribute
``dispatch_table`` maps ``types.CodeType`` to a reducer returning ``(types.CodeType, args)``
with the file name as one element of ``args``. Checked on cloudpickle 3.1.3 (the installed
version when this was written; 2.x and 3.0 keep the file name themselves, which changes
nothing here).

Fallback: when cloudpickle has no such reducer, :func:`dumps` is ``cloudpickle.dumps`` (a
traceback may then name ``<dynamic-code>``, with the right line number).
"""

from __future__ import annotations

import io
import linecache
import types
from collections import ChainMap
from typing import Any

import cloudpickle

__all__ = ["dumps"]

#: What cloudpickle >= 3.1 writes instead of a code object's file name.
_DYNAMIC = "<dynamic-code>"
#: Source files larger than this travel without their lines (the file name still does).
_MAX_SOURCE = 1 << 20

try:
    _parent_reduce = cloudpickle.Pickler.dispatch_table[types.CodeType]
except (AttributeError, KeyError, TypeError):  # another cloudpickle layout: plain dumps
    _parent_reduce = None


def _source(filename: str) -> list[str] | None:
    """The lines linecache has (or can read) for ``filename``, None for none or too many."""
    if not filename or filename.startswith("<") and filename.endswith(">"):
        return None
    lines = linecache.getlines(filename)
    if not lines or sum(map(len, lines)) > _MAX_SOURCE:
        return None
    return lines


def _code_reduce(code: types.CodeType):
    make, args = _parent_reduce(code)
    name = code.co_filename
    args = tuple(name if isinstance(a, str) and a == _DYNAMIC else a for a in args)
    lines = _source(name)
    if lines is None:
        return make, args
    return _code_with_source, (make, args, name, lines)


def _code_with_source(make: Any, args: tuple, filename: str, lines: list[str]):
    """Rebuild a code object and let tracebacks find its source (see the module docstring).

    Parameters
    ----------
    make : callable
        ``types.CodeType``.
    args : tuple
        Its arguments.
    filename : str
        The file the code was defined in.
    lines : list of str
        That file's lines when it was pickled.

    Returns
    -------
    types.CodeType
        The code object.
    """
    code = make(*args)
    if filename not in linecache.cache:
        linecache.cache[filename] = (sum(map(len, lines)), None, list(lines), filename)
    return code


if _parent_reduce is not None:
    class _Pickler(cloudpickle.Pickler):
        dispatch_table = ChainMap({types.CodeType: _code_reduce},
                                  cloudpickle.Pickler.dispatch_table)
else:  # pragma: no cover - only with an unknown cloudpickle
    _Pickler = cloudpickle.Pickler


def dumps(obj: Any, protocol: int | None = None) -> bytes:
    """``cloudpickle.dumps(obj)``, keeping the file name and source of pickled code.

    Parameters
    ----------
    obj : object
        What to pickle.
    protocol : int, optional
        The pickle protocol; default cloudpickle's.

    Returns
    -------
    bytes
        Bytes that ``cloudpickle.loads`` (or ``pickle.loads``) reads.

    Examples
    --------
    >>> import pickle
    >>> from dabc._compat.cloudpickle import dumps
    >>> f = pickle.loads(dumps(lambda x: x + 1))
    >>> f(1)
    2
    """
    with io.BytesIO() as file:
        _Pickler(file, protocol=protocol).dump(obj)
        return file.getvalue()
