"""StanModel: a Stan program compiled once whose compiled artifact travels as bytes.

:func:`compile_artifact` checks a program with stanc and compiles it (or reuses the cache);
:class:`StanModel` holds the result, an :class:`~dabc.stan.Artifact` (see
:mod:`dabc.stan.artifact` for how artifacts travel and are cached). Sending a ``StanModel`` to a
task sends only its metadata and hash; the bytes go to each worker once (see
:func:`dabc.stan.ship`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from . import _cmdstan
from .artifact import (
    COMPRESS_LEVEL,
    Artifact,
    backend_module,
    cache_dir,
    cached,
    count_compilation,
    materialise,
    receive,
    remember_path,
    reset_stats,
    runtime,
    set_cache_dir,
    stats,
    store,
)
from .errors import StanDataError, StanEnvironmentError, StanFitError
from .fit import Fit, run_fit

logger = logging.getLogger("dabc.stan")

# re-exported: these lived here before the artifact store and the errors had their own modules
__all__ = [
    "Artifact", "StanDataError", "StanEnvironmentError", "StanFitError", "StanModel",
    "cache_dir", "compile_artifact", "materialise", "receive", "reset_stats", "runtime",
    "set_cache_dir", "stats",
]


def _choose_backend(backend: str) -> str:
    if backend == "cmdstanpy":
        _cmdstan._require()
    if backend != "auto":
        backend_module(backend)  # an unknown name raises InputError
        return backend
    try:
        import httpstan  # noqa: F401

        return "httpstan"
    except ImportError:
        pass
    if _cmdstan.available():
        return "cmdstanpy"
    raise InputError(
        "No Stan backend is available: install PyStan 3 (pip install 'dabc[stan]'), which "
        "brings httpstan, or install CmdStan for CmdStanPy (python -m cmdstanpy.install_cmdstan)."
    )


# ----------------------------------------------------------------------------- StanModel

def _read_program(code_or_path: str | os.PathLike) -> tuple[str, str | None]:
    if isinstance(code_or_path, os.PathLike) or (
        isinstance(code_or_path, str) and "\n" not in code_or_path
        and code_or_path.strip().endswith(".stan")
    ):
        path = Path(code_or_path)
        try:
            return path.read_text(encoding="utf-8"), path.stem
        except OSError as exc:
            raise InputError(f"Cannot read the Stan program {str(path)!r}: {exc}.") from None
    if not isinstance(code_or_path, str) or not code_or_path.strip():
        raise InputError(
            "StanModel needs Stan program code (a string) or the path of a .stan file, "
            f"got {code_or_path!r:.80}."
        )
    return code_or_path, None


def compile_artifact(code: str, backend: str = "auto", root: str | os.PathLike | None = None,
                     name: str = "model") -> tuple[Artifact, bool, float, str]:
    """Check ``code`` with stanc, then compile it or reuse the cache ``root``.

    Runs in whatever process should compile: this one, or a worker (``StanModel(...,
    client=...)``).

    Parameters
    ----------
    code
        Stan program code.
    backend
        ``"httpstan"``, ``"cmdstanpy"`` or ``"auto"``.
    root
        The cache directory; defaults to :func:`~dabc.stan.cache_dir`.
    name
        The program's label, for messages.

    Returns
    -------
    (Artifact, bool, float, str)
        The artifact with its compressed bytes, whether it was compiled (False: reused from the
        cache), the seconds compiling took, and stanc's warnings.

    Raises
    ------
    dabc.InputError
        With stanc's message when the program does not translate; when no backend is
        available or the name is unknown.
    RuntimeError
        When the C++ compilation fails (the compiler's last lines).
    """
    backend = _choose_backend(backend)
    impl = backend_module(backend)
    try:
        warnings = impl.stanc(code)
    except ValueError as exc:
        raise InputError(f"Stan could not translate the program {name!r}:\n{exc}") from None
    root = Path(root) if root is not None else cache_dir()
    model_id = impl.model_id(code)
    env = impl.environment()
    found = cached(root, backend, model_id)
    compiled, seconds = False, 0.0
    if found is not None and found[0].get("environment") == env:
        meta, path = found
        logger.info("Stan program %r: reusing the compiled %s model %s from %s", name, backend,
                    model_id, path)
    else:
        logger.info("Stan program %r: compiling with %s into %s (takes about a minute)", name,
                    backend, root)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="dabc-stan-build-", dir=_mkdir(root)) as tmp:
            built = impl.build(code, Path(tmp))
            count_compilation()
            raw = built.read_bytes()
            meta = {"filename": built.name, "hash": hashlib.sha256(raw).hexdigest()}
            proto = Artifact(backend, model_id, built.name, meta["hash"], len(raw), env)
            path = store(root, proto, raw)
        compiled, seconds = True, time.perf_counter() - start
        logger.info("Stan program %r: compiled in %.1f s (%.1f MB, artifact %s)", name, seconds,
                    len(raw) / 1e6, meta["hash"][:12])
    raw = Path(path).read_bytes()
    artifact = Artifact(backend=backend, model_id=model_id, filename=meta["filename"],
                        hash=meta["hash"], size=len(raw), environment=env,
                        data=zlib.compress(raw, COMPRESS_LEVEL))
    remember_path(artifact, Path(path))
    return artifact, compiled, seconds, warnings


class StanModel:
    """A Stan program compiled once, whose compiled artifact travels to workers as bytes.

    ``StanModel(code_or_path)`` checks the program with stanc (a syntax error raises
    :class:`dabc.InputError` with stanc's message), then compiles it, or reuses an intact
    artifact from the cache directory, and keeps the compiled file in memory compressed, with
    its SHA-256 hash. Pickling a StanModel (as Dask does for every task) drops the bytes: the
    bytes reach each worker once through :func:`dabc.stan.ship`.

    Parameters
    ----------
    code_or_path
        Stan program code, or the path of a ``.stan`` file.
    name
        Label used in results; defaults to the file's stem or ``"model"``.
    backend
        ``"httpstan"`` (PyStan 3's compiler, the default), ``"cmdstanpy"`` (needs CmdStan) or
        ``"auto"`` (httpstan when installed, else CmdStanPy).
    cache_dir
        Where the compiled artifact is stored and looked up; defaults to
        :func:`dabc.stan.cache_dir`.
    client
        A ``distributed.Client``: compile on one of its workers (in that worker's cache)
        instead of here, e.g. when this machine has no C++ compiler. The artifact then
        records, and is checked against, the worker's environment.

    Attributes
    ----------
    code, name, backend
        The program, its label and the backend used.
    artifact : Artifact
        The compiled file (with its compressed bytes in the process that created the model).
    compiled : bool
        Whether this call compiled (False: reused from the cache).
    compile_seconds : float
        Seconds the compilation took (0 when reused).
    stanc_warnings : str
        stanc's warnings (pedantic mode).
    compiled_on : str
        ``"client"`` or ``"worker"``.

    Raises
    ------
    dabc.InputError
        When the program cannot be read, stanc rejects it (with stanc's message), or no Stan
        backend is installed.
    RuntimeError
        When the C++ compilation fails.

    Examples
    --------
    >>> model = StanModel("parameters { real x; } model { x ~ normal(0, 1); }")  # doctest: +SKIP
    >>> model.sample(chains=1, draws=100, seed=1).summary  # doctest: +SKIP
    """

    def __init__(
        self,
        code_or_path: str | os.PathLike,
        *,
        name: str | None = None,
        backend: str = "auto",
        cache_dir: str | os.PathLike | None = None,
        client: Any = None,
    ):
        self.code, stem = _read_program(code_or_path)
        self.name = name or stem or "model"
        if client is None:
            built = compile_artifact(self.code, backend, cache_dir, self.name)
        else:  # compile on one worker (e.g. the client machine has no C++ compiler)
            built = client.submit(compile_artifact, self.code, backend, None, self.name,
                                  pure=False).result()
        self.artifact, self.compiled, self.compile_seconds, self.stanc_warnings = built
        self.backend = self.artifact.backend
        self.compiled_on = "client" if client is None else "worker"

    @property
    def hash(self) -> str:
        """SHA-256 of the compiled artifact: identifies it on every worker."""
        return self.artifact.hash

    def __repr__(self) -> str:
        return (f"StanModel({self.name!r}, backend={self.backend!r}, artifact={self.hash[:12]}, "
                f"{self.artifact.size / 1e6:.1f} MB, {self.artifact.compressed_size / 1e6:.1f} "
                "MB compressed)")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["artifact"] = self.artifact.without_data()
        return state

    def param_names(self, data: Mapping | None = None) -> list[str]:
        """Names of the program's parameters, transformed parameters and generated quantities.

        Parameters
        ----------
        data
            The program's data (sizes may depend on it).

        Returns
        -------
        list of str
            Names in the program's order.

        Raises
        ------
        StanDataError
            When Stan rejects the data.
        """
        return runtime(self.artifact).param_names(_check_data(data))

    def sample(
        self,
        data: Mapping | None = None,
        *,
        chains: int = 4,
        draws: int = 1000,
        warmup: int | None = None,
        seed: int | None = None,
        **sampler_args: Any,
    ) -> Fit:
        """Run NUTS in this process, chains one after another.

        Parameters
        ----------
        data
            The program's data: variable name -> number or array.
        chains, draws, warmup
            Chains, saved draws per chain, warm-up iterations (default: ``draws``).
        seed
            Stan's random seed (default: a fresh one).
        **sampler_args
            Stan's NUTS arguments (``delta``, ``max_depth``, ``stepsize``, ...).

        Returns
        -------
        Fit
            The draws, sample statistics and summary.

        Raises
        ------
        StanDataError
            When Stan rejects the data, with Stan's message.
        StanFitError
            When sampling fails (e.g. initialisation), with Stan's message.
        dabc.InputError
            For an unknown sampler argument or data that is not numeric.
        """
        fit = run_fit(self, "data", data, chains=chains, draws=draws, warmup=warmup,
                      seed=_seed_int(seed), sampler_args=sampler_args)
        if not fit.ok:
            raise fit.exception()
        return fit


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _seed_int(seed) -> int:
    if seed is None:
        return int(np.random.SeedSequence().generate_state(1)[0] % (2**31 - 1))
    return int(seed) % (2**31 - 1)


def _check_data(data) -> dict:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise InputError(f"Stan data must be a dict of variable name to value, got "
                         f"{type(data).__name__}.")
    return dict(data)
