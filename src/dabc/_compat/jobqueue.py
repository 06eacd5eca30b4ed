"""The one place dabc touches dask-jobqueue's private API: how workers get their TLS files.

Why: ``dask_jobqueue.JobQueueCluster.__init__`` hands the cluster's ``Security`` to
``self._get_worker_security(security)`` and passes what it returns to every job, whose
worker command line is built from ``security.get_tls_config_for_role("worker")``
(``--tls-ca-file``, ``--tls-cert``, ``--tls-key``). For in-memory certificates (a
temporary ``Security``), dask-jobqueue's version writes the PEM text, key included, to
files in a *shared* temporary directory (the current directory by default) for the
workers to read over the shared filesystem; without one, TLS does not work at all (its own
test of that case is an expected failure).

:class:`NodeLocalTLSMixin` overrides ``_get_worker_security`` to return a ``Security`` that
names files under ``$DABC_TLS_DIR`` instead
(:meth:`dabc.cluster.tls.TLSMaterial.file_security`); the job script's prologue (the public
``job_script_prologue`` parameter) writes those files to a node-local 0700 directory and
removes it when the job ends (:meth:`~dabc.cluster.tls.TLSMaterial.job_script_lines`). The
worker command line is not quoted by dask-jobqueue, so bash expands ``$DABC_TLS_DIR``
there.

What it relies on: ``JobQueueCluster._get_worker_security(self, security)`` (private),
called once from ``JobQueueCluster.__init__`` with the cluster's ``Security`` (or None),
whose return value becomes the jobs' ``security`` keyword; and ``Job.__init__`` turning
that object's worker TLS config into ``--tls-*`` options. Checked on dask-jobqueue 0.9.0
(the version installed when this was written).

Fallback: :func:`node_local_tls_supported` answers False when the hook is gone; the caller
then refuses in-memory TLS with a clear error instead of letting dask-jobqueue write keys to
a shared directory.

Importing dask-jobqueue (0.9.0: its ``runner`` module, imported by ``dask_jobqueue.slurm``)
replaces the process's SIGINT handler with ``lambda *_: sys.exit()``: Ctrl-C would then
raise ``SystemExit`` instead of ``KeyboardInterrupt`` in the user's program, and dabc's
graceful stop (:class:`dabc.engine.checkpoint.StopGuard`) would restore that handler after a
run. dabc imports dask-jobqueue only here, and puts the previous handler back right after.
"""

from __future__ import annotations

import inspect
import signal
import threading
from typing import Any


def _import_keeping_sigint() -> None:
    """Import dask_jobqueue, then restore the SIGINT handler its import replaces."""
    main = threading.current_thread() is threading.main_thread()
    saved = signal.getsignal(signal.SIGINT) if main else None
    try:
        import dask_jobqueue  # noqa: F401
    finally:
        if saved is not None:
            signal.signal(signal.SIGINT, saved)


_import_keeping_sigint()

import dask_jobqueue  # noqa: E402 (after the import that keeps the SIGINT handler)
from dask_jobqueue.core import JobQueueCluster  # noqa: E402
from dask_jobqueue.slurm import slurm_format_bytes_ceil  # noqa: E402

__all__ = ["NodeLocalTLSMixin", "dask_jobqueue", "node_local_tls_supported",
           "slurm_format_bytes_ceil"]


def node_local_tls_supported() -> bool:
    """Whether this dask-jobqueue calls the ``_get_worker_security`` hook we override.

    Returns
    -------
    bool
        True when ``JobQueueCluster._get_worker_security(self, security)`` exists and
        ``JobQueueCluster.__init__`` calls it.
    """
    method = getattr(JobQueueCluster, "_get_worker_security", None)
    if method is None:
        return False
    if list(inspect.signature(method).parameters) != ["self", "security"]:
        return False
    try:
        return "_get_worker_security" in inspect.getsource(JobQueueCluster.__init__)
    except (OSError, TypeError):  # no source (frozen install): trust the signature
        return True


class NodeLocalTLSMixin:
    """Give jobs ``self._dabc_worker_security`` (file paths under ``$DABC_TLS_DIR``) in place
    of dask-jobqueue's dump of in-memory keys to a shared directory.

    Set ``_dabc_worker_security`` before ``JobQueueCluster.__init__`` runs; when it is None,
    dask-jobqueue's own behaviour applies (a ``Security`` that already names files).
    """

    _dabc_worker_security: Any = None

    def _get_worker_security(self, security: Any) -> Any:
        if security is None:
            return None
        if self._dabc_worker_security is not None:
            return self._dabc_worker_security
        return super()._get_worker_security(security)  # type: ignore[misc]
