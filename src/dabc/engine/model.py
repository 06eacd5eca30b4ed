"""Models and the layout that turns their summary statistics into flat vectors."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping

import numpy as np

from ..errors import InputError

# Models using the global numpy.random are seeded and called under this lock, so that
# threads (e.g. a ThreadPoolExecutor) cannot interleave their seeds.
_GLOBAL_RANDOM = threading.Lock()


def vectorized(fn: Callable | None = None, *, block_size: int = 256) -> Callable:
    """Mark a model as vectorized: it simulates a whole block of particles in one call.

    A vectorized model is called as ``f(params, rng)`` where ``params`` maps each parameter
    name to an array with one value per particle of the block, and returns a mapping from
    each statistic name to an array with one row per particle (shape ``(n,)`` for a scalar
    statistic, ``(n, k)`` for one with ``k`` values). Evaluations are made in fixed blocks
    of ``block_size`` evaluation ids, each block with its own random stream, so results do
    not depend on how blocks are spread over workers. Use it as ``@vectorized`` or
    ``@vectorized(block_size=...)``.

    On a distance function ``d(x, x0)`` it means "rows in, distances out": ``d`` is called
    once per batch of simulations with ``x`` mapping each statistic name to an array with
    one row per simulation, and returns one distance per row (see
    :class:`~dabc.FunctionDistance`); ``block_size`` is then ignored.

    Parameters
    ----------
    fn : callable, optional
        The model function. When omitted (``@vectorized(block_size=64)``), a decorator is
        returned instead.
    block_size : int, default 256
        Particles simulated per call. Larger blocks amortise the call's overhead; smaller
        ones spread a small population over more workers. When several models compete they
        must all be vectorized with the same ``block_size``, or none may be.

    Returns
    -------
    callable
        ``fn`` itself, marked (or, without ``fn``, a decorator that marks its argument).

    See Also
    --------
    ABCSMC : Takes vectorized and plain models alike.

    Examples
    --------
    >>> import dabc
    >>> @dabc.vectorized(block_size=128)
    ... def model(params, rng):
    ...     mu = params["mu"]  # shape (n,)
    ...     y = rng.normal(mu[:, None], 1.0, size=(len(mu), 5))
    ...     return {"mean": y.mean(axis=1)}  # shape (n,)
    """

    def mark(f):
        f._dabc_vectorized = int(block_size)
        return f

    return mark(fn) if fn is not None else mark


class Model:
    """A user model with its calling convention worked out once (internal to the engine).

    Parameters
    ----------
    fn : callable
        The model function, plain or :func:`vectorized`.
    name : str, optional
        Its name in messages and stored runs; default ``fn.__name__``.

    Raises
    ------
    InputError
        When ``fn`` is not callable.
    """

    def __init__(self, fn: Callable, name: str | None = None):
        if not callable(fn):
            raise InputError(f"A model must be callable, got {fn!r}.")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", type(fn).__name__)
        self.block_size = int(getattr(fn, "_dabc_vectorized", 0))
        self.takes_rng = self.block_size > 0 or _n_positional(fn) >= 2

    @property
    def vectorized(self) -> bool:
        """Whether the model simulates a whole block of particles per call."""
        return self.block_size > 0

    def __call__(self, params, rng: np.random.Generator):
        if self.takes_rng:
            return self.fn(params, rng)
        # A model using the global numpy.random gets it seeded from this evaluation's stream.
        seed = int(rng.integers(2**32))
        with _GLOBAL_RANDOM:
            np.random.seed(seed)
            return self.fn(params)


def _n_positional(fn) -> int:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = list(sig.parameters.values())
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return 2
    # the second positional parameter receives the rng when it is required or named "rng"
    return sum(p.kind in kinds and (p.default is p.empty or p.name == "rng") for p in params)


class StatLayout:
    """Fixed order and shapes of the summary statistics, taken from the observed data.

    Statistics are flattened into one float vector in the observed dict's key order; an
    array statistic ``y`` with ``k`` values becomes the columns ``y[0]`` ... ``y[k-1]``.

    Parameters
    ----------
    observed : mapping
        The observed summary statistics (name -> number or array).

    Raises
    ------
    InputError
        When ``observed`` is not a non-empty mapping, or holds NaN or infinity.
    """

    def __init__(self, observed: Mapping):
        if not isinstance(observed, Mapping) or not observed:
            raise InputError(
                f"observed must be a non-empty dict of summary statistics, got {observed!r}."
            )
        self.keys = [str(k) for k in observed]
        self.shapes, self.slices, start = {}, {}, 0
        for k in self.keys:
            arr = np.asarray(observed[k], dtype=float)
            self.shapes[k] = arr.shape
            self.slices[k] = slice(start, start + arr.size)
            start += arr.size
        self.size = start
        self.observed = self.flatten(observed)
        if not np.all(np.isfinite(self.observed)):
            raise InputError("observed statistics contain NaN or infinity.")

    def check_keys(self, out, model_name: str) -> None:
        """Raise InputError unless ``out`` has exactly the observed statistics."""
        if not isinstance(out, Mapping):
            raise InputError(
                f"Model {model_name!r} returned {type(out).__name__}; it must return a dict "
                f"of summary statistics with keys {self.keys}."
            )
        if set(map(str, out)) != set(self.keys):
            missing = sorted(set(self.keys) - set(map(str, out)))
            extra = sorted(set(map(str, out)) - set(self.keys))
            raise InputError(
                f"Model {model_name!r} returned statistics {sorted(map(str, out))} but observed "
                f"has {self.keys} (missing: {missing}, unexpected: {extra}). Make the model's "
                "output keys and the observed keys the same."
            )

    def flatten(self, out: Mapping) -> np.ndarray:
        """One statistics dict -> flat float vector."""
        vec = np.empty(self.size)
        for k in self.keys:
            val = np.asarray(out[k], dtype=float)
            if val.size != self.slices[k].stop - self.slices[k].start:
                raise InputError(
                    f"Statistic {k!r} has shape {val.shape}, observed has {self.shapes[k]}."
                )
            vec[self.slices[k]] = val.ravel()
        return vec

    def flatten_rows(self, out: Mapping, n: int) -> np.ndarray:
        """A vectorized model's output (one row per particle) -> (n, size) matrix."""
        mat = np.empty((n, self.size))
        for k in self.keys:
            val = np.asarray(out[k], dtype=float)
            if val.ndim == 0 or val.shape[0] != n:
                raise InputError(
                    f"Vectorized model returned {val.shape[0] if val.ndim else 'a scalar'} "
                    f"rows for statistic {k!r} for a block of {n} particles; return one row "
                    "per particle.")
            val = val.reshape(n, -1)
            if val.shape[1] != self.slices[k].stop - self.slices[k].start:
                raise InputError(
                    f"Statistic {k!r} has {val.shape[1]} values per particle, "
                    f"observed has shape {self.shapes[k]}."
                )
            mat[:, self.slices[k]] = val
        return mat

    def unflatten(self, vec: np.ndarray) -> dict:
        """Flat vector -> statistics dict (scalars stay scalars)."""
        out = {}
        for k in self.keys:
            v = vec[self.slices[k]]
            out[k] = float(v[0]) if self.shapes[k] == () else v.reshape(self.shapes[k])
        return out

    def columns(self) -> list[str]:
        """Column names of the flat vector, e.g. ``y`` or ``y[3]``."""
        cols = []
        for k in self.keys:
            n = self.slices[k].stop - self.slices[k].start
            cols += [k] if self.shapes[k] == () else [f"{k}[{i}]" for i in range(n)]
        return cols
