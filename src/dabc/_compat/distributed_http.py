"""A local Dask cluster whose scheduler and workers open no HTTP port at all.

Why: ``distributed.Scheduler`` always calls ``start_http_server``, whatever
``dashboard_address`` says: with ``dashboard_address=None`` (and ``dashboard=False``) it
still serves its HTTP routes (``distributed.scheduler.http.routes``: Prometheus metrics,
``/info`` pages with worker logs and call stacks, ``/json``, ``/health``, the proxy) without
authentication, on port 8787 of its host (``clean_dashboard_address(None or 8787)``). Every
``Worker`` does the same on a random port. ``LocalCluster(dashboard_address=None)`` only
turns off the Bokeh dashboard pages.

What it relies on: ``distributed.node.ServerNode.start_http_server(routes,
dashboard_address, default_port=0, ssl_options=None)`` (not public API), which
:class:`QuietScheduler` and :class:`QuietWorker` override to build the HTTP application but
never listen; ``SpecCluster.scheduler_spec`` and ``SpecCluster._start`` (private), which
:class:`QuietLocalCluster` uses to start a :class:`QuietScheduler` in place of the
``Scheduler`` that ``LocalCluster`` hard-codes; ``Nanny(worker_class=...)`` (public), which
:class:`QuietNanny` uses to start :class:`QuietWorker` processes.

Checked on distributed 2024.1 to 2026.8.0 (the version installed when this was written).

Fallback: :func:`quiet_cluster_supported` answers False when those names are gone; the
caller then starts a plain ``LocalCluster`` on loopback (HTTP routes served on 127.0.0.1
only) and warns.
"""

from __future__ import annotations

import inspect

from distributed import LocalCluster, Nanny, Scheduler, Worker
from distributed.node import ServerNode


def quiet_cluster_supported() -> bool:
    """Whether this version of distributed has the hooks the quiet classes override."""
    method = getattr(ServerNode, "start_http_server", None)
    if method is None or not hasattr(LocalCluster, "_start"):
        return False
    return list(inspect.signature(method).parameters)[:3] == ["self", "routes",
                                                             "dashboard_address"]


def _no_http_server(self, routes, dashboard_address, default_port=0, ssl_options=None):
    """Build the HTTP application (code elsewhere expects it) but listen nowhere."""
    from distributed.http.routing import RoutingApplication
    from tornado.httpserver import HTTPServer

    self.http_application = RoutingApplication(routes)
    self.http_server = HTTPServer(self.http_application)


class QuietScheduler(Scheduler):
    """A ``Scheduler`` that opens no HTTP port (no dashboard, metrics or info pages)."""

    start_http_server = _no_http_server


class QuietWorker(Worker):
    """A ``Worker`` that opens no HTTP port."""

    start_http_server = _no_http_server


class QuietNanny(Nanny):
    """A ``Nanny`` whose worker process is a :class:`QuietWorker`."""

    def __init__(self, *args, worker_class=None, **kwargs):
        super().__init__(*args, worker_class=worker_class or QuietWorker, **kwargs)


class QuietLocalCluster(LocalCluster):
    """``LocalCluster`` with :class:`QuietScheduler` (pass ``worker_class=QuietNanny`` for
    quiet workers)."""

    async def _start(self):
        if self.scheduler is None and self.scheduler_spec.get("cls") is Scheduler:
            self.scheduler_spec = {**self.scheduler_spec, "cls": QuietScheduler}
        await super()._start()
