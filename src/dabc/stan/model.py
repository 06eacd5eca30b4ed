"""StanModel: a Stan program compiled once whose compiled artifact travels as bytes.

The compiled artifact (httpstan's extension module, or CmdStan's executable) is read into memory,
hashed (SHA-256) and compressed. Sending a ``StanModel`` to a task sends only its metadata and
hash; the bytes go to each worker once (see :func:`dabc.stan.ship`), where they are written into
that worker's *own* cache directory ("materialised") and loaded once per process. No filesystem
is assumed to be shared between the machine that compiled and the machines that sample.

Every process keeps counters (:func:`stats`) of compilations, artifacts received,
materialisations and module loads, so tests and benchmarks can check that work is not repeated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

COMPRESS_LEVEL = 6  # zlib: a 34 MB httpstan module becomes ~7.6 MB in ~1 s


class StanEnvironmentError(InputError):
    """A compiled Stan artifact does not fit the environment it was sent to."""


class StanDataError(InputError):
    """Stan rejected the data given for a model (missing variable, bad size, broken constraint)."""


class StanFitError(RuntimeError):
    """Stan failed while sampling (e.g. initialisation failed); the message is Stan's."""


# ----------------------------------------------------------------------------- cache directory

def cache_dir() -> Path:
    """This process's dabc cache directory.

    ``$DABC_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/dabc``, else ``~/.cache/dabc``. Each Dask
    worker uses its own (see :class:`dabc.stan.LocalCacheDirs` for a per-worker temporary one).
    """
    if os.environ.get("DABC_CACHE_DIR"):
        return Path(os.environ["DABC_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dabc"


def set_cache_dir(path: str | os.PathLike) -> Path:
    """Use ``path`` as this process's dabc cache directory from now on; returns it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    os.environ["DABC_CACHE_DIR"] = str(path)
    return path


# ----------------------------------------------------------------------------- counters

_LOCK = threading.RLock()
_STATS: dict[str, Any] = {
    "compilations": 0,
    "artifacts_received": Counter(),
    "materialisations": Counter(),
    "loads": Counter(),
}


def stats() -> dict:
    """Counters of this process: compilations; and per artifact hash, artifacts received from
    the client, materialisations (artifact written into this process's cache) and loads.

    Also the process id and cache directory, to show that workers are separate.
    """
    with _LOCK:
        return {
            "pid": os.getpid(),
            "cache_dir": str(cache_dir()),
            "compilations": _STATS["compilations"],
            "artifacts_received": dict(_STATS["artifacts_received"]),
            "materialisations": dict(_STATS["materialisations"]),
            "loads": dict(_STATS["loads"]),
        }


def reset_stats() -> None:
    """Set this process's counters back to zero (tests and benchmarks)."""
    with _LOCK:
        _STATS["compilations"] = 0
        for key in ("artifacts_received", "materialisations", "loads"):
            _STATS[key].clear()


# ----------------------------------------------------------------------------- backends

def _backend_module(name: str):
    if name == "httpstan":
        from . import _httpstan

        return _httpstan
    if name == "cmdstanpy":
        from . import _cmdstan

        return _cmdstan
    raise InputError(f"Unknown Stan backend {name!r}; use 'httpstan', 'cmdstanpy' or 'auto'.")


def _choose_backend(backend: str) -> str:
    if backend == "cmdstanpy":
        from . import _cmdstan

        _cmdstan._require()
    if backend != "auto":
        return backend
    try:
        import httpstan  # noqa: F401

        return "httpstan"
    except ImportError:
        pass
    from . import _cmdstan

    if _cmdstan.available():
        return "cmdstanpy"
    raise InputError(
        "No Stan backend is available: install PyStan 3 (pip install 'dabc[stan]'), which "
        "brings httpstan, or install CmdStan for CmdStanPy (python -m cmdstanpy.install_cmdstan)."
    )


# ----------------------------------------------------------------------------- artifacts

@dataclasses.dataclass(frozen=True)
class Artifact:
    """A compiled Stan program as bytes: what travels to workers.

    ``hash`` is the SHA-256 of the uncompressed file, ``data`` the zlib-compressed file (None in
    copies sent inside tasks), ``environment`` what the file needs to work where it is loaded.
    """

    backend: str
    model_id: str
    filename: str
    hash: str
    size: int
    environment: dict
    data: bytes | None = dataclasses.field(default=None, repr=False)

    @property
    def compressed_size(self) -> int:
        """Bytes that travel over the network (0 for a copy without data)."""
        return len(self.data or b"")

    def without_data(self) -> Artifact:
        """This artifact's metadata only, cheap to send with every task."""
        return dataclasses.replace(self, data=None)

    def environment_differences(self) -> list[str]:
        """How this process's environment differs from the one the artifact was built for."""
        here = _backend_module(self.backend).environment()
        diffs = []
        for key, built in self.environment.items():
            if here.get(key) != built:
                diffs.append(f"{key}: built with {built!r}, here {here.get(key)!r}")
        return diffs

    def check_environment(self) -> None:
        """Raise StanEnvironmentError saying what differs when the artifact cannot work here."""
        diffs = self.environment_differences()
        if diffs:
            explain = _backend_module(self.backend).ENVIRONMENT_NOTE
            raise StanEnvironmentError(
                f"The compiled Stan model {self.model_id} (artifact {self.hash[:12]}) was built "
                f"for a different environment than this process ({os.uname().nodename}, pid "
                f"{os.getpid()}): " + "; ".join(diffs) + f". {explain}"
            )


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _artifact_dir(root: Path, backend: str, model_id: str) -> Path:
    return root / "stan" / backend / model_id


def _cached(root: Path, backend: str, model_id: str, want_hash: str | None = None):
    """(metadata, path) of a usable artifact in cache ``root``, or None."""
    folder = _artifact_dir(root, backend, model_id)
    try:
        meta = json.loads((folder / "artifact.json").read_text())
    except (OSError, ValueError):
        return None
    path = folder / meta.get("filename", "")
    if not path.is_file() or (want_hash and meta.get("hash") != want_hash):
        return None
    if _sha256_file(path) != meta.get("hash"):
        return None  # damaged or half-written: ignore it, it will be rewritten
    return meta, path


def _atomic_write(path: Path, data: bytes, mode: int = 0o755) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _store(root: Path, artifact: Artifact, raw: bytes) -> Path:
    folder = _artifact_dir(root, artifact.backend, artifact.model_id)
    path = folder / artifact.filename
    _atomic_write(path, raw)
    meta = {k: v for k, v in dataclasses.asdict(artifact).items() if k != "data"}
    _atomic_write(folder / "artifact.json", json.dumps(meta, indent=1).encode(), 0o644)
    return path


# where each artifact lives in this process's cache, and its loaded runtime, by hash
_PATHS: dict[str, Path] = {}
_RUNTIMES: dict[str, Any] = {}
_ERRORS: dict[str, Exception] = {}


def _after_fork_in_child() -> None:
    # loaded modules belong to the parent's Stan thread; the backend reloads them in the child
    global _LOCK
    _LOCK = threading.RLock()
    _RUNTIMES.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def materialise(artifact: Artifact, root: str | os.PathLike | None = None) -> Path:
    """Make ``artifact`` available in this process's cache directory; return the file's path.

    Checks the environment first (StanEnvironmentError saying what differs). Writes the file
    only when the cache does not already hold an intact copy with the same hash; each write is
    counted in ``stats()["materialisations"]``.
    """
    with _LOCK:
        artifact.check_environment()
        if artifact.hash in _PATHS and _PATHS[artifact.hash].is_file():
            return _PATHS[artifact.hash]
        root = Path(root) if root is not None else cache_dir()
        found = _cached(root, artifact.backend, artifact.model_id, artifact.hash)
        if found is not None:
            path = found[1]
        else:
            if artifact.data is None:
                raise StanEnvironmentError(
                    f"The compiled Stan model {artifact.model_id} (artifact {artifact.hash[:12]}) "
                    f"has not been sent to this process (pid {os.getpid()}) and is not in its "
                    f"cache {root}. Run fits with dabc.stan.sample_many(..., client=client), or "
                    "call dabc.stan.ship(model, client) before submitting your own tasks."
                )
            raw = zlib.decompress(artifact.data)
            if hashlib.sha256(raw).hexdigest() != artifact.hash:
                raise StanEnvironmentError(
                    f"The Stan artifact {artifact.hash[:12]} arrived damaged (hash mismatch)."
                )
            path = _store(root, artifact, raw)
            _STATS["materialisations"][artifact.hash] += 1
        _PATHS[artifact.hash] = path
        return path


def receive(artifact: Artifact) -> None:
    """Called on a worker when the artifact's bytes arrive: count, then materialise.

    An error (e.g. a different environment) is kept and raised again by every task that needs
    the artifact, so fits fail with the explanation instead of a confusing import error.
    """
    with _LOCK:
        _STATS["artifacts_received"][artifact.hash] += 1
        try:
            materialise(artifact)
            _ERRORS.pop(artifact.hash, None)
        except Exception as exc:
            _ERRORS[artifact.hash] = exc
            raise


def runtime(artifact: Artifact):
    """The loaded compiled model for ``artifact`` in this process (loaded once per process)."""
    with _LOCK:
        rt = _RUNTIMES.get(artifact.hash)
        if rt is not None:
            return rt
        if artifact.hash in _ERRORS and artifact.data is None:
            raise _ERRORS[artifact.hash]
        path = materialise(artifact)
        rt = _backend_module(artifact.backend).Runtime(path)
        _RUNTIMES[artifact.hash] = rt
        _STATS["loads"][artifact.hash] += 1
        return rt


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

    Returns (artifact with its compressed bytes, whether it was compiled, seconds, stanc
    warnings). A syntax error raises :class:`dabc.InputError` with stanc's message. Runs in
    whatever process should compile: this one, or a worker (``StanModel(..., client=...)``).
    """
    backend = _choose_backend(backend)
    impl = _backend_module(backend)
    try:
        warnings = impl.stanc(code)
    except ValueError as exc:
        raise InputError(f"Stan could not translate the program {name!r}:\n{exc}") from None
    root = Path(root) if root is not None else cache_dir()
    model_id = impl.model_id(code)
    env = impl.environment()
    found = _cached(root, backend, model_id)
    compiled, seconds = False, 0.0
    if found is not None and found[0].get("environment") == env:
        meta, path = found
    else:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="dabc-stan-build-", dir=_mkdir(root)) as tmp:
            built = impl.build(code, Path(tmp))
            with _LOCK:
                _STATS["compilations"] += 1
            raw = built.read_bytes()
            meta = {"filename": built.name, "hash": hashlib.sha256(raw).hexdigest()}
            proto = Artifact(backend, model_id, built.name, meta["hash"], len(raw), env)
            path = _store(root, proto, raw)
        compiled, seconds = True, time.perf_counter() - start
    raw = Path(path).read_bytes()
    artifact = Artifact(backend=backend, model_id=model_id, filename=meta["filename"],
                        hash=meta["hash"], size=len(raw), environment=env,
                        data=zlib.compress(raw, COMPRESS_LEVEL))
    with _LOCK:
        _PATHS.setdefault(artifact.hash, Path(path))
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
        Where the compiled artifact is stored and looked up; defaults to :func:`cache_dir`.
    client
        A ``distributed.Client``: compile on one of its workers (in that worker's cache)
        instead of here, e.g. when this machine has no C++ compiler. The artifact then
        records, and is checked against, the worker's environment.
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
        """Names of the program's parameters, transformed parameters and generated quantities."""
        return runtime(self.artifact).param_names(_check_data(data))

    def sample(
        self,
        data: Mapping | None = None,
        *,
        chains: int = 4,
        draws: int = 1000,
        warmup: int | None = None,
        seed: int | None = None,
        **sampler_args,
    ):
        """Run NUTS in this process, chains one after another; returns a :class:`dabc.stan.Fit`.

        Raises :class:`StanDataError` when Stan rejects the data and :class:`StanFitError`
        when sampling fails, each with Stan's message. ``sampler_args`` are Stan's NUTS
        arguments (``delta``, ``max_depth``, ``stepsize``, ...).
        """
        from .fit import run_fit

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
