"""Dask worker plugins: the artifact shipped once per worker, and private worker cache folders."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from .artifact import Artifact, receive, set_cache_dir


class ArtifactPlugin(WorkerPlugin):
    """Carries one compiled Stan artifact (compressed bytes) to every worker, once.

    Registered with ``idempotent = True`` under a name derived from the artifact's hash, so the
    scheduler sends it to each current worker once and to every worker that joins later, and
    registering it again is a no-op. ``setup`` writes the file into that worker's own cache.

    Parameters
    ----------
    artifact
        The artifact, with its compressed bytes.
    """

    idempotent = True

    def __init__(self, artifact: Artifact):
        self.artifact = artifact
        self.name = f"dabc-stan-artifact-{artifact.hash[:24]}"

    def setup(self, worker: Any = None) -> None:
        """Count the arrival and materialise the artifact in this worker's cache directory."""
        receive(self.artifact)


class PrivateCacheDir(WorkerPlugin):
    """Gives every worker process its own new temporary dabc cache directory.

    Use it to be sure that nothing travels through a filesystem shared by the workers (as on
    separate machines): register it before any Stan work, e.g.
    ``client.register_plugin(PrivateCacheDir())``. The folder is removed on teardown.

    Parameters
    ----------
    parent
        Where the folders are created (default: the system's temporary directory).
    """

    idempotent = True
    name = "dabc-private-cache-dir"

    def __init__(self, parent: str | None = None):
        self.parent = parent
        self.path: str | None = None

    def setup(self, worker: Any = None) -> None:
        """Create the worker's folder and point ``DABC_CACHE_DIR`` and ``XDG_CACHE_HOME`` at it."""
        self.path = tempfile.mkdtemp(prefix=f"dabc-worker-{os.getpid()}-", dir=self.parent)
        set_cache_dir(os.path.join(self.path, "dabc"))
        os.environ["XDG_CACHE_HOME"] = self.path

    def teardown(self, worker: Any = None) -> None:
        """Remove the worker's folder."""
        if self.path:
            shutil.rmtree(self.path, ignore_errors=True)
