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
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import os
import platform
import re
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from types import ModuleType

import numpy as np

BUILD_TIMEOUT = 1800  # seconds; a first compile takes about a minute on an idle machine

_BUILD_SCRIPT = """
import asyncio, sys
import httpstan.models
code = open(sys.argv[1], encoding="utf-8").read()
asyncio.run(httpstan.models.build_services_extension_module(code))
"""


def environment() -> dict:
    """What an httpstan extension module depends on, as recorded with and checked on an artifact.

    httpstan's model id hashes the program with its own version, the platform, the interpreter's
    version and path; the module also finds ``libtbb`` through an absolute run path into the
    httpstan package directory.
    """
    import httpstan

    return {
        "backend": "httpstan",
        "httpstan version": httpstan.__version__,
        "python version": sys.version,
        "python executable": sys.executable,
        "platform": f"{sys.platform} {platform.machine()} maxsize={sys.maxsize}",
        "extension suffix": EXTENSION_SUFFIXES[0],
        "httpstan library directory (libtbb run path)": str(Path(httpstan.__file__).parent / "lib"),
    }


def model_id(code: str) -> str:
    """httpstan's id of ``code`` in this environment (e.g. ``v5gy5tcs``)."""
    import httpstan.models

    return httpstan.models.calculate_model_name(code).split("/")[1]


def stanc(code: str, timeout: float = 120.0) -> str:
    """Translate ``code`` with httpstan's stanc; returns its warnings, raises ValueError(message).

    httpstan's own wrapper gives stanc one second, which a busy machine can exceed.
    """
    with importlib.resources.as_file(importlib.resources.files("httpstan") / "stanc") as exe:
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

    The build runs in a child interpreter (the same executable, so httpstan computes the same
    model id) whose user cache directory is ``workdir``: nothing is written to, or reused from,
    httpstan's cache in the user's home, and compiler output stays out of the caller's stderr.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    src = workdir / "program.stan"
    src.write_text(code, encoding="utf-8")
    env = dict(os.environ, XDG_CACHE_HOME=str(workdir / "xdg"))
    proc = subprocess.run(
        [sys.executable, "-c", _BUILD_SCRIPT, str(src)],
        capture_output=True, text=True, env=env, timeout=BUILD_TIMEOUT,
    )
    modules = [
        p for p in (workdir / "xdg").rglob(f"models/{model_id(code)}/*")
        if p.suffix in EXTENSION_SUFFIXES
    ]
    if proc.returncode != 0 or not modules:
        tail = "\n".join((proc.stderr or "").strip().splitlines()[-30:])
        raise RuntimeError(f"Compiling the Stan program with httpstan failed:\n{tail}")
    return modules[0]


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
    spec = importlib.util.spec_from_file_location("stan_services", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    _LOADED.add(key)
    return module


def load(path: Path) -> ModuleType:
    """Import an httpstan extension module from ``path`` in the Stan thread.

    Its module name is always ``stan_services``; it is not put in ``sys.modules``.
    """
    return in_stan_thread(_load, path)


_STAN_FILE = re.compile(r"'[^']*?model_\w+\.stan'")


def clean_message(text: str) -> str:
    """Stan's message without the temporary file name stanc saw."""
    return _STAN_FILE.sub("'program.stan'", str(text)).strip()


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
    """Run one ``stan::services`` wrapper in a thread of this process and collect its output.

    Returns (draws, logger messages): each draw a dict of sampler and model values, each logger
    message a string such as ``"info:Iteration: ..."`` or ``"error:..."``.
    Raises RuntimeError/ValueError with Stan's message when Stan throws.
    """
    outcome: dict = {}
    wake_r, wake_w = os.pipe()  # written to when the service returns, so select wakes at once

    def run():
        try:
            outcome["rc"] = function(path, data, init, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            outcome["exc"] = exc
        finally:
            os.write(wake_w, b"x")

    try:
        with tempfile.TemporaryDirectory(prefix="dabc-stan-") as tmp:
            path = os.path.join(tmp, "s")
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
                server.bind(path)
                server.listen(8)
                future = stan_thread().submit(run)
                started = time.monotonic()
                conns: dict = {}
                chunks: list[bytearray] = []
                done = False
                while True:
                    readable, _, _ = select.select(
                        [server, wake_r, *conns], [], [], 0.0 if done else 1.0)
                    for s in readable:
                        if s is wake_r:
                            os.read(wake_r, 1)
                            done = True
                        elif s is server:
                            conn, _ = server.accept()
                            conns[conn] = bytearray()
                        else:
                            msg = s.recv(1 << 16)
                            if msg:
                                conns[s] += msg
                            else:
                                chunks.append(conns.pop(s))
                                s.close()
                    if done and not conns and not readable:
                        break  # the service returned and every writer closed its connection
                    if not done and time.monotonic() - started > 0.02:
                        # a long run (not a quick simulation): let output pile up in the
                        # socket buffers (~200 kB) for a moment; waking for every draw's
                        # message cost ~15% of a core and slowed Stan itself by a third
                        time.sleep(0.002)
                future.result()
    finally:
        os.close(wake_r)
        os.close(wake_w)
    if "exc" in outcome:
        exc = outcome["exc"]
        raise type(exc)(clean_message(str(exc))) if isinstance(exc, ValueError | RuntimeError) \
            else exc
    draws, logs = [], []
    for buf in chunks:
        for line in bytes(buf).splitlines():
            if not line.strip():
                continue
            msg = json.loads(line)
            topic, values = msg.get("topic"), msg.get("values")
            if topic == "sample" and isinstance(values, dict):
                draws.append(values)
            elif topic == "logger" and values:
                logs.extend(str(v) for v in values)
    if outcome.get("rc", 0) != 0:
        errors = [m.removeprefix("error:").strip() for m in logs if m.startswith("error:")]
        warns = [m.removeprefix("warn:").strip() for m in logs if m.startswith("warn:")]
        text = " ".join(errors + warns[:4]) or f"Stan returned error code {outcome['rc']}."
        raise RuntimeError(clean_message(text))
    return draws, logs


ENVIRONMENT_NOTE = (
    "httpstan extension modules are only valid in an identical environment: httpstan's model "
    "id hashes the program with the httpstan version, the platform and the Python "
    "interpreter's version and path, and the module loads libtbb through an absolute run path "
    "into the httpstan package. Install the same Python and httpstan at the same paths on the "
    "workers as on the machine that compiled (e.g. one container image), or compile where the "
    "fits run."
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
        from httpstan.services import arguments

        self._arguments = arguments

    def _meta(self, data: dict):
        """(param names, dims, constrained names); raises ValueError/RuntimeError on bad data."""
        m = self.module

        def get():
            return m.get_param_names(data), m.get_dims(data), m.constrained_param_names(data)

        try:
            return in_stan_thread(get)
        except (ValueError, RuntimeError, TypeError) as exc:
            from .model import StanDataError

            raise StanDataError(f"Stan rejected the data: {clean_message(exc)}") from None

    def param_names(self, data: dict) -> list[str]:
        """Names of parameters, transformed parameters and generated quantities."""
        return list(self._meta(_data(data))[0])

    def _defaults(self, basename: str, method: str) -> dict:
        A = self._arguments
        names = A.function_arguments(basename, self.module)
        with warnings.catch_warnings():  # httpstan reads its defaults with a deprecated API
            warnings.simplefilter("ignore", DeprecationWarning)
            return {a: A.lookup_default(A.Method[method], a) for a in names
                    if a not in ("data", "init", "random_seed", "chain")}

    def sample(self, data: dict, chains: int, draws: int, warmup: int, seed: int,
               sampler_args: dict):
        """NUTS (adaptive diagonal metric), one chain after another in this process.

        Returns (posterior, sample_stats, messages): arrays shaped (chain, draw, *dims).
        """
        data = _data(data)
        names, dims, flat_names = self._meta(data)
        kwargs = self._defaults("hmc_nuts_diag_e_adapt", "SAMPLE")
        kwargs.update(num_warmup=int(warmup), num_samples=int(draws), num_thin=1,
                      save_warmup=False, refresh=0)
        unknown = sorted(set(sampler_args) - set(kwargs))
        if unknown:
            from ..errors import InputError

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
                from .model import StanFitError

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

        Returns arrays shaped (draws, *dims) for every generated quantity and parameter.
        """
        data = _data(data)
        names, dims, flat_names = self._meta(data)
        try:
            rows, _ = call_service(self.module.fixed_param_wrapper, data, _data(init),
                                   random_seed=int(seed), chain=1, init_radius=0.0,
                                   num_samples=int(draws), num_thin=1, refresh=0)
        except (ValueError, RuntimeError) as exc:
            from .model import StanFitError

            raise StanFitError(f"Stan failed in fixed-parameter sampling: "
                               f"{clean_message(exc)}") from None
        out = _reshape([rows], names, dims, flat_names)
        return {k: v[0] for k, v in out.items()}  # drop the chain axis


def _data(data) -> dict:
    try:
        return prepare_data(data or {})
    except TypeError as exc:
        from .model import StanDataError

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
