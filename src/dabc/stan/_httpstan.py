"""PyStan 3 / httpstan backend: compile with the machine's C++ compiler, load and sample in-process.

httpstan normally runs each ``stan::services`` call in a *forked* process pool and reads the
sampler's output from a Unix socket in an asyncio loop. Forking is not allowed inside daemonic
processes such as Dask workers, so here everything runs in the calling process: the service
function runs in one dedicated "Stan thread" (it releases the GIL while Stan runs) while the
calling thread reads the socket. One chain at a time, so each fit stays single-threaded.

Why one dedicated thread: Stan Math built with STAN_THREADS keeps its autodiff tape in a
thread-local pointer that a static initialiser sets up only in the thread that loads the
extension module. Calling the sampler from any other thread dereferences a null tape and
crashes the process. So modules are loaded, and all their functions called, in the same
long-lived thread.

Every use of httpstan's private protocol (model names, the build, stanc, the services module and
its socket messages, argument defaults) goes through :mod:`dabc._compat.httpstan`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from types import ModuleType

import numpy as np

from .._compat import httpstan as compat
from ..errors import InputError
from .errors import StanDataError, StanFitError

logger = logging.getLogger("dabc.stan")

BUILD_TIMEOUT = 1800  # seconds; a first compile takes about a minute on an idle machine


def environment() -> dict:
    """What an httpstan extension module depends on, as recorded with and checked on an artifact.

    The module is built for one CPython version and platform (its extension suffix), links
    httpstan's compiled Stan services of one httpstan version, and finds ``libtbb`` through an
    absolute run path into the (resolved) httpstan package directory. The interpreter is
    recorded by its *resolved* path: ``venv/bin/python`` and ``venv/bin/python3`` are the same
    interpreter reached through two symlinks.

    Returns
    -------
    dict
        Field name to value; two environments are compatible when every field is equal.
    """
    import httpstan

    return {
        "backend": "httpstan",
        "httpstan version": httpstan.__version__,
        "python version": sys.version,
        "python executable (resolved)": os.path.realpath(sys.executable),
        "platform": f"{sys.platform} {platform.machine()} maxsize={sys.maxsize}",
        "extension suffix": EXTENSION_SUFFIXES[0],
        "httpstan library directory (libtbb run path)": str(compat.library_dir()),
    }


def model_id(code: str) -> str:
    """dabc's cache key of ``code`` in this environment (16 hex digits).

    A hash of the program and :func:`environment`, so the same interpreter reached through
    another symlink finds the same cached module. (httpstan's own id, which hashes the
    unresolved interpreter path, is only used inside the build.)
    """
    h = hashlib.blake2b(digest_size=8)
    h.update(code.encode())
    h.update(repr(sorted(environment().items())).encode())
    return h.hexdigest()


def stanc(code: str, timeout: float = 120.0) -> str:
    """Translate ``code`` with httpstan's stanc; returns its warnings, raises ValueError(message).

    httpstan's own wrapper gives stanc one second, which a busy machine can exceed.
    """
    with compat.stanc_executable() as exe:
        with tempfile.TemporaryDirectory(prefix="dabc-stanc-") as tmp:
            path = Path(tmp) / "program.stan"
            path.write_text(code, encoding="utf-8")
            proc = subprocess.run(
                [str(exe), "--name", "dabc_check", "--warn-pedantic", "--print-cpp", str(path)],
                capture_output=True, timeout=timeout, text=True,
            )
    stderr = proc.stderr.strip().replace(str(path), "program.stan")
    if proc.returncode != 0:
        raise ValueError(stderr)
    return stderr


def build(code: str, workdir: Path) -> Path:
    """Compile ``code`` into an extension module under ``workdir``; return the module's path.

    See :func:`dabc._compat.httpstan.build_module`: a child interpreter with a private httpstan
    cache, compiler output kept out of the caller's stderr.
    """
    compat.note_version()
    path, _ = compat.build_module(code, workdir, BUILD_TIMEOUT)
    return path


_STAN_THREAD: ThreadPoolExecutor | None = None
_STAN_THREAD_LOCK = threading.Lock()
_LOADED: set[str] = set()  # module files loaded by this process image
_INHERITED: set[str] = set()  # ... and by the parent, when this process is a fork


def _after_fork_in_child() -> None:
    # The parent's Stan thread does not exist in a forked child: start a new one on demand.
    # Modules the parent loaded are mapped here but their autodiff tape belongs to that lost
    # thread, so they are loaded again from a copy (see load).
    global _STAN_THREAD, _STAN_THREAD_LOCK
    _STAN_THREAD, _STAN_THREAD_LOCK = None, threading.Lock()
    _INHERITED.update(_LOADED)


os.register_at_fork(after_in_child=_after_fork_in_child)


def stan_thread() -> ThreadPoolExecutor:
    """This process's single long-lived thread in which Stan modules are loaded and called."""
    global _STAN_THREAD
    with _STAN_THREAD_LOCK:
        if _STAN_THREAD is None:
            _STAN_THREAD = ThreadPoolExecutor(1, thread_name_prefix="dabc-stan")
        return _STAN_THREAD


def in_stan_thread(fn, *args, **kwargs):
    """Call ``fn(*args, **kwargs)`` in the Stan thread and return its result."""
    if threading.current_thread().name.startswith("dabc-stan"):
        return fn(*args, **kwargs)
    return stan_thread().submit(fn, *args, **kwargs).result()


def _load(path: Path) -> ModuleType:
    key = str(Path(path).resolve())
    if key in _INHERITED:
        # dlopen would hand back the parent's already-initialised copy: load a private copy,
        # whose static initialisers then run in this process's Stan thread. The file is
        # removed once loaded (it stays mapped).
        fd, tmp = tempfile.mkstemp(suffix=Path(path).name, prefix=f"dabc-fork-{os.getpid()}-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(Path(path).read_bytes())
        try:
            return _load(Path(tmp))
        finally:
            os.unlink(tmp)
    module = compat.load_services_module(path)
    _LOADED.add(key)
    logger.debug("loaded the Stan module %s in process %d", path, os.getpid())
    return module


def load(path: Path) -> ModuleType:
    """Import an httpstan extension module from ``path`` in the Stan thread.

    Its module name is always ``stan_services``; it is not put in ``sys.modules``.
    """
    compat.note_version()
    return in_stan_thread(_load, path)


clean_message = compat.clean_message


def prepare_data(data) -> dict:
    """Stan data as httpstan's C++ side expects it: names to ints, floats or numeric arrays."""
    out = {}
    for name, value in dict(data).items():
        arr = np.asarray(value)
        if arr.dtype == bool:
            arr = arr.astype(int)
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise TypeError(
                f"Stan data variable {name!r} must be numeric (int, float or an array of them), "
                f"got {type(value).__name__} {value!r:.60}."
            )
        out[str(name)] = arr.tolist() if arr.ndim else arr.item()
    return out


def call_service(function, data: dict, init: dict, **kwargs) -> tuple[list[dict], list[str]]:
    """Run one ``stan::services`` wrapper in the Stan thread and collect its output.

    Returns (draws, logger messages); raises RuntimeError/ValueError with Stan's message when
    Stan throws. See :func:`dabc._compat.httpstan.run_service`.
    """
    return compat.run_service(function, data, init, stan_thread().submit, **kwargs)


ENVIRONMENT_NOTE = (
    "httpstan extension modules are only valid in an identical environment: a module is built "
    "for one CPython version and platform, links the Stan services of one httpstan version, "
    "and loads libtbb through an absolute run path into the httpstan package. Install the same "
    "Python and httpstan at the same (resolved) paths on the workers as on the machine that "
    "compiled (e.g. one container image), or compile where the fits run "
    "(StanModel(..., client=client))."
)

_STATS_NAMES = {
    "lp__": "lp", "accept_stat__": "acceptance_rate", "stepsize__": "step_size",
    "treedepth__": "tree_depth", "n_leapfrog__": "n_steps", "divergent__": "diverging",
    "energy__": "energy",
}


class Runtime:
    """A loaded httpstan extension module, with sampling and simulation in this process."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.module = load(self.path)

    def _meta(self, data: dict):
        """(param names, dims, constrained names); raises StanDataError on bad data."""
        m = self.module

        def get():
            return m.get_param_names(data), m.get_dims(data), m.constrained_param_names(data)

        try:
            return in_stan_thread(get)
        except (ValueError, RuntimeError, TypeError) as exc:
            raise StanDataError(f"Stan rejected the data: {clean_message(exc)}") from None

    def param_names(self, data: dict) -> list[str]:
        """Names of parameters, transformed parameters and generated quantities."""
        return list(self._meta(_data(data))[0])

    def sample(self, data: dict, chains: int, draws: int, warmup: int, seed: int,
               sampler_args: dict):
        """NUTS (adaptive diagonal metric), one chain after another in this process.

        Returns (posterior, sample_stats, messages): arrays shaped ``(chain, draw, *dims)``.
        """
        data = _data(data)
        names, dims, flat_names = self._meta(data)
        kwargs = compat.service_defaults(self.module, "hmc_nuts_diag_e_adapt", "SAMPLE")
        kwargs.update(num_warmup=int(warmup), num_samples=int(draws), num_thin=1,
                      save_warmup=False, refresh=0)
        unknown = sorted(set(sampler_args) - set(kwargs))
        if unknown:
            raise InputError(f"Unknown Stan sampler argument(s) {unknown}; known: "
                             f"{sorted(kwargs)}.")
        kwargs.update(sampler_args)
        chain_draws, messages = [], []
        fn = self.module.hmc_nuts_diag_e_adapt_wrapper
        for chain in range(1, chains + 1):
            try:
                rows, logs = call_service(fn, data, {}, random_seed=int(seed), chain=chain,
                                          **kwargs)
            except (ValueError, RuntimeError) as exc:
                raise StanFitError(f"Stan failed in chain {chain}: {clean_message(exc)}") \
                    from None
            chain_draws.append(rows)
            messages += [m for m in logs if m.startswith(("warn:", "error:"))]
        posterior = _reshape(chain_draws, names, dims, flat_names)
        stats = {}
        for stan_name, az_name in _STATS_NAMES.items():
            if chain_draws and chain_draws[0] and stan_name in chain_draws[0][0]:
                arr = np.array([[row[stan_name] for row in rows] for rows in chain_draws])
                stats[az_name] = arr.astype(bool) if az_name == "diverging" else arr
        return posterior, stats, messages

    def simulate(self, data: dict, init: dict, seed: int, draws: int = 1) -> dict:
        """Fixed-parameter sampling: parameters held at ``init``, generated quantities drawn.

        Returns arrays shaped ``(draws, *dims)`` for every generated quantity and parameter.
        """
        data = _data(data)
        names, dims, flat_names = self._meta(data)
        try:
            rows, _ = call_service(self.module.fixed_param_wrapper, data, _data(init),
                                   random_seed=int(seed), chain=1, init_radius=0.0,
                                   num_samples=int(draws), num_thin=1, refresh=0)
        except (ValueError, RuntimeError) as exc:
            raise StanFitError(f"Stan failed in fixed-parameter sampling: "
                               f"{clean_message(exc)}") from None
        out = _reshape([rows], names, dims, flat_names)
        return {k: v[0] for k, v in out.items()}  # drop the chain axis


def _data(data) -> dict:
    try:
        return prepare_data(data or {})
    except TypeError as exc:
        raise StanDataError(str(exc)) from None


def _reshape(chain_draws, names, dims, flat_names) -> dict:
    """Per-draw dicts (flat names like ``beta.2.1``) -> arrays (chain, draw, *dims).

    Stan flattens arrays in column-major order, which ``np.unravel_index(..., order="F")``
    inverts.
    """
    n_chains, n_draws = len(chain_draws), len(chain_draws[0]) if chain_draws else 0
    out, pos = {}, 0
    for name, dim in zip(names, dims, strict=True):
        dim = tuple(int(d) for d in dim)
        size = int(np.prod(dim)) if dim else 1
        cols = flat_names[pos:pos + size]
        pos += size
        arr = np.empty((n_chains, n_draws, *dim))
        for k, col in enumerate(cols):
            idx = np.unravel_index(k, dim, order="F") if dim else ()
            arr[(slice(None), slice(None), *idx)] = [
                [row.get(col, np.nan) for row in rows] for rows in chain_draws
            ]
        out[name] = arr
    return out
