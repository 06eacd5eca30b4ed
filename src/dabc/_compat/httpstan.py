"""httpstan's private protocol, behind one door: everything dabc.stan uses that httpstan does not
document as public API.

PyStan 3 talks to httpstan over HTTP; dabc instead calls httpstan's compiled extension module
in-process (httpstan's forked process pool cannot run inside Dask workers). That relies on
these httpstan internals, and on nothing else of httpstan:

1. **Model name.** ``httpstan.models.calculate_model_name(code)`` returns ``"models/<id>"``; the
   build below puts the module under ``$XDG_CACHE_HOME/httpstan/<version>/models/<id>/``
   (httpstan's cache layout) as ``stan_services_model_<id><EXTENSION_SUFFIX>``.
2. **Build.** ``httpstan.models.build_services_extension_module(code)`` (a coroutine), run in a
   child interpreter whose ``XDG_CACHE_HOME`` is a private folder.
3. **stanc.** The stanc executable shipped inside the package (``httpstan/stanc``).
4. **Run path.** The module finds ``libtbb`` through an absolute run path to ``httpstan/lib``
   (httpstan's ``PACKAGE_DIR``, which it resolves).
5. **The services module.** Loaded from its file under the module name ``stan_services``
   (``importlib``); it has ``get_param_names``, ``get_dims``, ``constrained_param_names``,
   ``hmc_nuts_diag_e_adapt_wrapper`` and ``fixed_param_wrapper``. A ``*_wrapper(socket_path,
   data, init, **kwargs)`` runs a ``stan::services`` function; its callbacks connect to the Unix
   socket ``socket_path`` and each writes JSON lines ``{"topic": ..., "values": ...}``: topic
   ``"sample"`` with a dict of one draw's values, topic ``"logger"`` with a list of messages
   such as ``"info:..."``/``"error:..."``; it returns 0 on success, else an error code.
6. **Argument defaults.** ``httpstan.services.arguments.function_arguments`` (parses the
   wrapper's docstring), ``lookup_default`` and ``Method``.

Checked on: httpstan 4.13.0 with PyStan 3.10.0 (CPython 3.11.7, Linux x86_64, distributed
2026.8.0), as listed in :data:`CHECKED_VERSIONS`; ``tests/test_stan.py`` exercises every
function here on the installed versions and fails when the installed httpstan or PyStan is not
a checked one (check it, then add it there).

``dabc.stan`` uses no private name of ``distributed`` (only ``WorkerPlugin``,
``Client.register_plugin``/``submit``/``run``, ``as_completed`` and ``Future.status``/
``release``), so it needs no door for it.

When it breaks: any missing name, changed layout or unreadable socket message raises
:class:`HttpstanCompatError` (a :class:`dabc.DabcError`) naming the installed and the checked
httpstan versions and what to install; nothing is silently worked around. Another httpstan
version is not refused up front: it is logged once (``dabc.stan``) and used.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.resources
import importlib.util
import json
import logging
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import DabcError

logger = logging.getLogger("dabc.stan")

#: The versions on which everything in this module was checked.
CHECKED_VERSIONS: dict[str, tuple[str, ...]] = {"httpstan": ("4.13.0",), "pystan": ("3.10.0",)}

#: The functions a compiled services module must have.
SERVICE_FUNCTIONS = ("get_param_names", "get_dims", "constrained_param_names",
                     "hmc_nuts_diag_e_adapt_wrapper", "fixed_param_wrapper")

_BUILD_SCRIPT = """
import asyncio, sys
import httpstan.models
code = open(sys.argv[1], encoding="utf-8").read()
asyncio.run(httpstan.models.build_services_extension_module(code))
"""

_STAN_FILE = re.compile(r"'[^']*?model_\w+\.stan'")  # the temporary file httpstan gives stanc


class HttpstanCompatError(DabcError):
    """httpstan's private protocol changed in a way dabc does not know; the message says which
    httpstan is installed, which versions dabc was checked on, and what to install.

    Deliberately not a RuntimeError or ValueError, which Stan's own failures are: it is never
    mistaken for a failed fit or rejected data.
    """


def versions() -> dict[str, str | None]:
    """The installed versions of httpstan and PyStan (None when not installed).

    Returns
    -------
    dict
        ``{"httpstan": "4.13.0", "pystan": "3.10.0"}`` or with None for a missing package.
    """
    out: dict[str, str | None] = {}
    for name in CHECKED_VERSIONS:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def incompatible(what: str, exc: BaseException | None = None) -> HttpstanCompatError:
    """The error for a broken assumption about httpstan, naming the versions.

    Parameters
    ----------
    what
        Which internal was not as expected (e.g. ``"the services module's get_dims"``).
    exc
        The exception that revealed it, quoted in the message.

    Returns
    -------
    HttpstanCompatError
        To be raised by the caller.
    """
    installed = versions()
    checked = ", ".join(f"{k} {' / '.join(v)}" for k, v in CHECKED_VERSIONS.items())
    cause = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
    pins = " ".join(f"'{k}=={v[-1]}'" for k, v in CHECKED_VERSIONS.items())
    return HttpstanCompatError(
        f"dabc.stan could not use {what} of the installed httpstan {installed['httpstan']} "
        f"(PyStan {installed['pystan']}){cause}. dabc calls httpstan's extension modules "
        f"in-process through httpstan internals that were checked on {checked}: install those "
        f"(pip install {pins}), or use StanModel(..., backend='cmdstanpy')."
    )


_VERSION_NOTED = False


def note_version() -> None:
    """Log once per process (``dabc.stan``, level INFO) when httpstan is a version not checked."""
    global _VERSION_NOTED
    if _VERSION_NOTED:
        return
    _VERSION_NOTED = True
    v = versions()["httpstan"]
    if v not in CHECKED_VERSIONS["httpstan"]:
        logger.info("httpstan %s is not a version dabc.stan was checked on (%s); if fits fail "
                    "with HttpstanCompatError, install one of those.", v,
                    ", ".join(CHECKED_VERSIONS["httpstan"]))


def model_name(code: str) -> str:
    """httpstan's id of ``code`` in this interpreter (e.g. ``"v5gy5tcs"``).

    It hashes the program with the httpstan version, the platform and the interpreter's version
    and (unresolved) path, so the same program has another id under another interpreter
    symlink.

    Parameters
    ----------
    code
        Stan program code.

    Returns
    -------
    str
        The id without httpstan's ``"models/"`` prefix.

    Raises
    ------
    HttpstanCompatError
        When httpstan has no ``calculate_model_name`` or its result has another shape.
    """
    try:
        import httpstan.models

        name = httpstan.models.calculate_model_name(code)
        prefix, ident = name.split("/")
    except (AttributeError, ValueError) as exc:
        raise incompatible("httpstan.models.calculate_model_name", exc) from None
    if prefix != "models" or not ident:
        raise incompatible(f"the model name {name!r} (expected 'models/<id>')")
    return ident


def library_dir() -> Path:
    """The resolved ``httpstan/lib`` folder, to which compiled modules link libtbb.

    Returns
    -------
    Path
        The folder (httpstan resolves its package path, and so does this).
    """
    import httpstan

    return Path(httpstan.__file__).resolve().parent / "lib"


@contextlib.contextmanager
def stanc_executable() -> Iterator[Path]:
    """The stanc executable shipped inside httpstan, as a context manager yielding its path.

    Yields
    ------
    Path
        The executable.

    Raises
    ------
    HttpstanCompatError
        When the package holds no ``stanc``.
    """
    with importlib.resources.as_file(importlib.resources.files("httpstan") / "stanc") as exe:
        if not Path(exe).is_file():
            raise incompatible("the stanc executable inside the httpstan package")
        yield Path(exe)


def build_module(code: str, workdir: Path, timeout: float) -> tuple[Path, str]:
    """Compile ``code`` with httpstan into ``workdir``; return the module's path and stderr.

    The build runs in a child interpreter (this one's ``sys.executable``, so httpstan computes
    the same model id) whose ``XDG_CACHE_HOME`` is ``workdir/xdg``: nothing is written to, or
    reused from, httpstan's cache in the user's home.

    Parameters
    ----------
    code
        Stan program code (already checked by stanc).
    workdir
        An empty folder for the build.
    timeout
        Seconds before the build is abandoned.

    Returns
    -------
    (Path, str)
        The compiled extension module, and the build's stderr.

    Raises
    ------
    RuntimeError
        When the build fails (the last lines of the compiler's output).
    HttpstanCompatError
        When the build succeeded but the module is not where httpstan's layout puts it.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    src = workdir / "program.stan"
    src.write_text(code, encoding="utf-8")
    env = dict(os.environ, XDG_CACHE_HOME=str(workdir / "xdg"))
    proc = subprocess.run([sys.executable, "-c", _BUILD_SCRIPT, str(src)],
                          capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or "").strip().splitlines()[-30:])
        raise RuntimeError(f"Compiling the Stan program with httpstan failed:\n{tail}")
    modules = [p for p in (workdir / "xdg").rglob(f"models/{model_name(code)}/*")
               if p.suffix in EXTENSION_SUFFIXES]
    if not modules:
        raise incompatible("the cache layout (no compiled module under models/<id>/ after "
                           "build_services_extension_module)")
    return modules[0], proc.stderr or ""


def load_services_module(path: str | os.PathLike) -> ModuleType:
    """Import a compiled services module from its file (module name ``stan_services``).

    Must be called in the thread that will call the module's functions (Stan keeps its autodiff
    tape per thread). The module is not put in ``sys.modules``.

    Parameters
    ----------
    path
        The extension module's file.

    Returns
    -------
    ModuleType
        The loaded module, checked to have :data:`SERVICE_FUNCTIONS`.

    Raises
    ------
    HttpstanCompatError
        When the file is not importable as ``stan_services`` or lacks a service function.
    """
    spec = importlib.util.spec_from_file_location("stan_services", path)
    if spec is None or spec.loader is None:
        raise incompatible(f"the compiled module {str(path)!r} (not an extension module)")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        if "PyInit_stan_services" in str(exc):
            raise incompatible("the compiled module's name 'stan_services'", exc) from None
        raise
    missing = [f for f in SERVICE_FUNCTIONS if not hasattr(module, f)]
    if missing:
        raise incompatible(f"the services module (it lacks {', '.join(missing)})")
    return module


def service_defaults(module: ModuleType, basename: str, method: str = "SAMPLE") -> dict[str, Any]:
    """httpstan's default keyword arguments of one service function of ``module``.

    Parameters
    ----------
    module
        A loaded services module.
    basename
        The service without ``_wrapper``, e.g. ``"hmc_nuts_diag_e_adapt"``.
    method
        httpstan's ``Method`` member whose defaults apply (``"SAMPLE"``).

    Returns
    -------
    dict
        Argument name to default, without ``data``, ``init``, ``random_seed`` and ``chain``.

    Raises
    ------
    HttpstanCompatError
        When ``httpstan.services.arguments`` no longer offers these lookups.
    """
    try:
        from httpstan.services import arguments as A

        names = A.function_arguments(basename, module)
        with warnings.catch_warnings():  # httpstan reads its defaults with a deprecated API
            warnings.simplefilter("ignore", DeprecationWarning)
            return {a: A.lookup_default(A.Method[method], a) for a in names
                    if a not in ("data", "init", "random_seed", "chain")}
    except (ImportError, AttributeError, KeyError, ValueError) as exc:
        raise incompatible(f"httpstan.services.arguments for {basename!r}", exc) from None


def clean_message(text: object) -> str:
    """Stan's message without the temporary file name httpstan gave stanc.

    Parameters
    ----------
    text
        A message (or an exception).

    Returns
    -------
    str
        The message with ``'.../model_<id>.stan'`` replaced by ``'program.stan'``.
    """
    return _STAN_FILE.sub("'program.stan'", str(text)).strip()


def parse_messages(chunks: list[bytes]) -> tuple[list[dict], list[str]]:
    """Split what the service's callbacks wrote to the socket into draws and logger messages.

    Parameters
    ----------
    chunks
        Everything each connection sent (JSON lines).

    Returns
    -------
    (list of dict, list of str)
        One dict per draw (sampler and model values), and the logger messages in order.

    Raises
    ------
    HttpstanCompatError
        When a line is not a JSON object with a ``topic``.
    """
    draws, logs = [], []
    for buf in chunks:
        for line in bytes(buf).splitlines():
            if not line.strip():
                continue
            try:
                msg = json.loads(line)
                topic, values = msg["topic"], msg.get("values")
            except (ValueError, TypeError, KeyError) as exc:
                raise incompatible(f"a socket message {bytes(line)[:80]!r}", exc) from None
            if topic == "sample" and isinstance(values, dict):
                draws.append(values)
            elif topic == "logger" and values:
                logs.extend(str(v) for v in values)
    return draws, logs


def run_service(function: Callable, data: dict, init: dict,
                submit: Callable[[Callable[[], None]], Future], **kwargs) -> tuple[
                    list[dict], list[str]]:
    """Run one ``stan::services`` wrapper and collect its output from a Unix socket.

    Parameters
    ----------
    function
        A ``*_wrapper`` of a loaded services module.
    data, init
        Stan data and initial values: names to ints, floats or (nested) lists of them.
    submit
        Runs a callable in the thread that loaded the module and returns its Future (e.g. a
        one-thread executor's ``submit``); this thread reads the socket meanwhile.
    **kwargs
        The service's arguments (``random_seed``, ``chain``, ``num_samples``, ...).

    Returns
    -------
    (list of dict, list of str)
        The draws and the logger messages (``"info:..."``, ``"error:..."``).

    Raises
    ------
    RuntimeError, ValueError
        With Stan's message when Stan throws or returns an error code.
    HttpstanCompatError
        When the socket carries messages of an unknown shape.
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
                future = submit(run)
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
    draws, logs = parse_messages(chunks)
    if outcome.get("rc", 0) != 0:
        errors = [m.removeprefix("error:").strip() for m in logs if m.startswith("error:")]
        warns = [m.removeprefix("warn:").strip() for m in logs if m.startswith("warn:")]
        text = " ".join(errors + warns[:4]) or f"Stan returned error code {outcome['rc']}."
        raise RuntimeError(clean_message(text))
    return draws, logs
