"""The artifact store: compiled Stan programs as bytes, and this process's cache of them.

The compiled artifact (httpstan's extension module, or CmdStan's executable) is read into memory,
hashed (SHA-256) and compressed (:class:`Artifact`). Sending a model to a task sends only the
artifact's metadata and hash; the bytes go to each worker once (see :func:`dabc.stan.ship`),
where :func:`receive` writes them into that worker's *own* cache directory ("materialised",
:func:`materialise`) and :func:`runtime` loads them once per process. No filesystem is assumed
to be shared between the machine that compiled and the machines that sample.

Every process keeps counters (:func:`stats`) of compilations, artifacts received,
materialisations and module loads, so tests and benchmarks can check that work is not repeated.

Import order inside ``dabc.stan`` (each module imports only those before it): ``errors`` ->
``_httpstan``, ``_cmdstan`` (backends) -> ``artifact`` -> ``fit`` -> ``model`` -> ``simulator``,
``_dask`` -> ``fleet``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import threading
import zlib
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import InputError
from . import _cmdstan, _httpstan
from .errors import StanEnvironmentError

logger = logging.getLogger("dabc.stan")

COMPRESS_LEVEL = 6  # zlib: a 34 MB httpstan module becomes ~7.6 MB in ~1 s

# ----------------------------------------------------------------------------- cache directory


def cache_dir() -> Path:
    """This process's dabc cache directory.

    Each Dask worker uses its own (see :class:`dabc.stan.PrivateCacheDir` for a per-worker
    temporary one).

    Returns
    -------
    Path
        ``$DABC_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/dabc``, else ``~/.cache/dabc``
        (not created).
    """
    if os.environ.get("DABC_CACHE_DIR"):
        return Path(os.environ["DABC_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dabc"


def set_cache_dir(path: str | os.PathLike) -> Path:
    """Use ``path`` as this process's dabc cache directory from now on.

    Parameters
    ----------
    path
        The folder; created if missing. Sets ``$DABC_CACHE_DIR``, so child processes use it too.

    Returns
    -------
    Path
        The folder.

    Raises
    ------
    OSError
        When the folder cannot be created.
    """
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


def stats() -> dict[str, Any]:
    """Counters of this process, to check that no work is repeated.

    Returns
    -------
    dict
        ``pid`` and ``cache_dir`` (to show that workers are separate); ``compilations`` (an
        int); and, each a dict artifact hash -> count, ``artifacts_received`` (bytes that
        arrived from the client), ``materialisations`` (files written into this process's
        cache) and ``loads`` (modules loaded).
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
    """Set this process's counters (:func:`stats`) back to zero (tests and benchmarks)."""
    with _LOCK:
        _STATS["compilations"] = 0
        for key in ("artifacts_received", "materialisations", "loads"):
            _STATS[key].clear()


def count_compilation() -> None:
    """Count one compilation in :func:`stats` (called by whoever compiled)."""
    with _LOCK:
        _STATS["compilations"] += 1


# ----------------------------------------------------------------------------- backends

_BACKENDS: dict[str, ModuleType] = {"httpstan": _httpstan, "cmdstanpy": _cmdstan}


def backend_module(name: str) -> ModuleType:
    """The backend module (``_httpstan`` or ``_cmdstan``) called ``name``.

    Parameters
    ----------
    name
        ``"httpstan"`` or ``"cmdstanpy"``.

    Returns
    -------
    ModuleType
        It has ``environment()``, ``model_id(code)``, ``stanc(code)``, ``build(code, dir)``,
        ``ENVIRONMENT_NOTE`` and ``Runtime(path)``.

    Raises
    ------
    InputError
        For any other name.
    """
    try:
        return _BACKENDS[name]
    except KeyError:
        raise InputError(f"Unknown Stan backend {name!r}; use 'httpstan', 'cmdstanpy' or "
                         "'auto'.") from None


# ----------------------------------------------------------------------------- artifacts

_MISSING = "<not recorded by this version of dabc>"


@dataclasses.dataclass(frozen=True)
class Artifact:
    """A compiled Stan program as bytes: what travels to workers.

    Parameters
    ----------
    backend
        ``"httpstan"`` or ``"cmdstanpy"``.
    model_id
        Cache key of the program in its environment (the folder it is stored in).
    filename
        The compiled file's name.
    hash
        SHA-256 of the uncompressed file.
    size
        Bytes of the uncompressed file.
    environment
        What the file needs to work where it is loaded (field -> value), see
        :meth:`environment_differences`.
    data
        The zlib-compressed file; None in the copies sent inside tasks.
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
        """This artifact's metadata only, cheap to send with every task.

        Returns
        -------
        Artifact
            A copy whose ``data`` is None.
        """
        return dataclasses.replace(self, data=None)

    def environment_differences(self) -> list[str]:
        """How this process's environment differs from the one the artifact was built for.

        Returns
        -------
        list of str
            One entry per field that differs, ``"<field>: built with <value>, here <value>"``;
            empty when the artifact can be used here.
        """
        here = backend_module(self.backend).environment()
        diffs = []
        for key, built in self.environment.items():
            if here.get(key, _MISSING) != built:
                diffs.append(f"{key}: built with {built!r}, here {here.get(key, _MISSING)!r}")
        for key in here.keys() - self.environment.keys():
            diffs.append(f"{key}: built with {_MISSING!r}, here {here[key]!r}")
        return diffs

    def check_environment(self) -> None:
        """Check that the artifact can be used in this process.

        Raises
        ------
        StanEnvironmentError
            Naming each field that differs, with both values, and what to do.
        """
        diffs = self.environment_differences()
        if diffs:
            explain = backend_module(self.backend).ENVIRONMENT_NOTE
            raise StanEnvironmentError(
                f"The compiled Stan model {self.model_id} (artifact {self.hash[:12]}) was built "
                f"for a different environment than this process ({os.uname().nodename}, pid "
                f"{os.getpid()}): " + "; ".join(diffs) + f". {explain}"
            )


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's contents, as hex digits."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _artifact_dir(root: Path, backend: str, model_id: str) -> Path:
    return root / "stan" / backend / model_id


def cached(root: Path, backend: str, model_id: str,
           want_hash: str | None = None) -> tuple[dict, Path] | None:
    """The metadata and path of an intact artifact in cache ``root``, or None.

    A file whose hash does not match its metadata (damaged, half-written) counts as absent.
    """
    folder = _artifact_dir(root, backend, model_id)
    try:
        meta = json.loads((folder / "artifact.json").read_text())
    except (OSError, ValueError):
        return None
    path = folder / meta.get("filename", "")
    if not path.is_file() or (want_hash and meta.get("hash") != want_hash):
        return None
    if sha256_file(path) != meta.get("hash"):
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


def store(root: Path, artifact: Artifact, raw: bytes) -> Path:
    """Write ``raw`` (the uncompressed file) and ``artifact``'s metadata into cache ``root``.

    Both writes are atomic; returns the file's path.
    """
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


def remember_path(artifact: Artifact, path: Path) -> None:
    """Note that ``artifact``'s file is at ``path`` in this process (e.g. just compiled)."""
    with _LOCK:
        _PATHS.setdefault(artifact.hash, Path(path))


def _after_fork_in_child() -> None:
    # loaded modules belong to the parent's Stan thread; the backend reloads them in the child
    global _LOCK
    _LOCK = threading.RLock()
    _RUNTIMES.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def materialise(artifact: Artifact, root: str | os.PathLike | None = None) -> Path:
    """Make ``artifact`` available in this process's cache directory.

    Checks the environment first. Writes the file only when the cache does not already hold an
    intact copy with the same hash; each write is counted in ``stats()["materialisations"]``.

    Parameters
    ----------
    artifact
        The artifact, with its bytes unless the cache already holds it.
    root
        The cache directory; defaults to :func:`cache_dir`.

    Returns
    -------
    Path
        The compiled file in the cache.

    Raises
    ------
    StanEnvironmentError
        When the environment differs (naming each field), when the bytes never reached this
        process and the cache does not hold them, or when they arrived damaged.
    """
    with _LOCK:
        artifact.check_environment()
        if artifact.hash in _PATHS and _PATHS[artifact.hash].is_file():
            return _PATHS[artifact.hash]
        root = Path(root) if root is not None else cache_dir()
        found = cached(root, artifact.backend, artifact.model_id, artifact.hash)
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
            path = store(root, artifact, raw)
            _STATS["materialisations"][artifact.hash] += 1
            logger.info("materialised Stan artifact %s (model %s, %.1f MB) into %s in "
                        "process %d", artifact.hash[:12], artifact.model_id, len(raw) / 1e6,
                        path, os.getpid())
        _PATHS[artifact.hash] = path
        return path


def receive(artifact: Artifact) -> None:
    """Called on a worker when the artifact's bytes arrive: count, then materialise.

    An error (e.g. a different environment) is kept and raised again by every task that needs
    the artifact, so fits fail with the explanation instead of a confusing import error.

    Parameters
    ----------
    artifact
        The artifact with its bytes.

    Raises
    ------
    StanEnvironmentError
        As :func:`materialise`.
    """
    with _LOCK:
        _STATS["artifacts_received"][artifact.hash] += 1
        logger.info("received Stan artifact %s (model %s, %.1f MB compressed) in process %d",
                    artifact.hash[:12], artifact.model_id, artifact.compressed_size / 1e6,
                    os.getpid())
        try:
            materialise(artifact)
            _ERRORS.pop(artifact.hash, None)
        except Exception as exc:
            logger.warning("cannot use Stan artifact %s in process %d: %s", artifact.hash[:12],
                           os.getpid(), exc)
            _ERRORS[artifact.hash] = exc
            raise


def runtime(artifact: Artifact) -> Any:
    """The loaded compiled model for ``artifact`` in this process (loaded once per process).

    Parameters
    ----------
    artifact
        The artifact (its bytes are needed only if it is not materialised here yet).

    Returns
    -------
    object
        The backend's ``Runtime`` (``param_names``, ``sample``, ``simulate``).

    Raises
    ------
    StanEnvironmentError
        As :func:`materialise`, or the error kept when the artifact arrived unusable.
    """
    with _LOCK:
        rt = _RUNTIMES.get(artifact.hash)
        if rt is not None:
            return rt
        if artifact.hash in _ERRORS and artifact.data is None:
            raise _ERRORS[artifact.hash]
        path = materialise(artifact)
        rt = backend_module(artifact.backend).Runtime(path)
        _RUNTIMES[artifact.hash] = rt
        _STATS["loads"][artifact.hash] += 1
        logger.debug("loaded Stan artifact %s in process %d", artifact.hash[:12], os.getpid())
        return rt
