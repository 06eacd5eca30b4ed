"""Server time of the dashboard's updates on a large database (issue 13: < 200 ms each).

    python benchmarks/dashboard_latency.py [--repeats 30] [--particles 100000]
        [--generations 50] [--runs 100] [--dir DIR]

Two SQLite databases are written directly through the storage API (History.create_run /
append_generation / write_live, no ABC run): (a) ``--runs`` runs of 10 generations of 1,000
particles, five of them "running" with a fresh heartbeat; (b) one running run of
``--generations`` generations of ``--particles`` particles (two parameters, two summary
statistics). The dashboard app (:func:`dabc.viz.dashboard.make_app`, with a token) is served
by a threaded werkzeug server on 127.0.0.1, and the Dash callbacks are posted over HTTP
exactly as the browser posts them (Bearer token). A WSGI middleware times each request inside
the server (from the moment werkzeug hands it to Flask until the response body is produced:
authentication, Dash's dispatch, the database reads, the JSON encoding).

Printed as JSON: per case, the server milliseconds (median, p95, max, n) and the response
size. Cases:

- ``runs_page_tick``: the runs table's one-second update (database a); ``open_runs_page``
  and ``open_run_page``: the page switch (the layout of the runs page with its table, or of
  a run's page);
- ``run_page_tick``: a run page's one-second update when nothing new was stored (the
  steady state: live row, runs table, steering log) and ``run_page_tick_new_generation``:
  the same when a generation was stored since (the series and figures are sent again);
- ``posterior_cached``: the generation slider's marginals and pair for a generation seen
  before (database b; what every later look costs) and ``posterior_first_look``: for a
  generation not seen before (reads its 100,000 particles once and computes the densities).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import requests

from dabc.storage import History
from dabc.viz import dashboard, dashboard_data

TOKEN = "benchmark-token-0123456789"


def _info(t: int, n: int, rng) -> dict:
    now = datetime(2026, 1, 1) + timedelta(seconds=t)
    sims = int(n * (1 + t) * 1.5)
    return {"epsilon": float("inf") if t == 0 else 2.0 / t, "n_simulations": sims,
            "n_evaluated": sims, "n_accepted": n, "acceptance_rate": n / sims,
            "ess": 0.8 * n, "walltime_s": 1.0 + rng.random(), "started": now,
            "finished": now, "model_probabilities": [1.0]}


def writer(path: Path) -> History:
    """A History that creates the database (``create=True`` where History has it)."""
    try:
        return History(path, create=True)
    except TypeError:  # a History that creates by default
        return History(path)


def write_run(h: History, n_gens: int, n: int, rng, running: bool) -> int:
    """One run of ``n_gens`` generations of ``n`` particles, through the storage API."""
    rid = h.create_run(seed=1, population_size=n, model_names=["m"],
                       param_names=[["a", "b"]], stat_columns=["s0", "s1"], observed=b"",
                       config=b"", version="benchmark")
    for t in range(n_gens):
        theta = rng.normal(size=(n, 2)) / (1 + t) + [1.0, -1.0]
        arrays = {"theta": theta, "weight": rng.random(n), "distance": rng.random(n),
                  "stats": theta + rng.normal(size=(n, 2)), "id": np.arange(n, dtype=np.int64)}
        h.append_generation(t, _info(t, n, rng), {0: arrays}, state=b"")
    if running:
        now = datetime.now(UTC).replace(tzinfo=None)
        h.write_live({"t": n_gens, "epsilon": 0.1, "accepted": n // 3, "needed": n,
                      "evaluations": n, "worker_seconds": 5.0,
                      "generation_started": now - timedelta(seconds=3), "updated": now,
                      "host": "node1", "pid": 1, "rules": {"max_generations": 100},
                      "steerable": True})
    else:
        h.set_status("done", "max_generations reached")
    return rid


class Timing:
    """WSGI middleware: the server time of each request, until its body is produced."""

    def __init__(self, app):
        self.app, self.times, self.lock = app, [], threading.Lock()

    def __call__(self, environ, start_response):
        tic = time.perf_counter()
        body = b"".join(self.app(environ, start_response))
        with self.lock:
            self.times.append(time.perf_counter() - tic)
        return [body]


def _quiet_handler():
    from werkzeug.serving import WSGIRequestHandler

    class Handler(WSGIRequestHandler):
        def log_request(self, *args, **kwargs):  # no request log on stderr
            pass

    return Handler


class Server:
    """The dashboard app of ``db`` on 127.0.0.1, timed."""

    def __init__(self, db: str):
        from werkzeug.serving import make_server

        self.app = dashboard.make_app(db, token=TOKEN)
        self.timing = Timing(self.app.server.wsgi_app)
        self.app.server.wsgi_app = self.timing
        self.httpd = make_server("127.0.0.1", 0, self.app.server, threaded=True,
                                 request_handler=_quiet_handler())
        self.base = f"http://127.0.0.1:{self.httpd.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {TOKEN}"
        self.outputs = {key: value for key, value in self.app.callback_map.items()}

    def _output_key(self, marker: str) -> str:
        return next(k for k in self.outputs if marker in k)

    def post(self, marker: str, inputs: list, state: list, changed: str) -> tuple[float, int]:
        key = self._output_key(marker)
        outs = [dict(zip(("id", "property"), part.rsplit(".", 1), strict=True))
                for part in key.strip(".").split("...")]
        body = {"output": key, "outputs": outs if key.startswith("..") else outs[0],
                "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
                "state": [{"id": i, "property": p, "value": v} for i, p, v in state],
                "changedPropIds": [changed]}
        n = len(self.timing.times)
        r = self.session.post(self.base + "/_dash-update-component", json=body, timeout=120)
        r.raise_for_status()
        return self.timing.times[n], len(r.content)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def summary(samples: list[tuple[float, int]]) -> dict:
    ms = sorted(1000 * s for s, _ in samples)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return {"median_ms": round(statistics.median(ms), 2), "p95_ms": round(p95, 2),
            "max_ms": round(ms[-1], 2), "n": len(ms),
            "response_kb": round(statistics.median(b for _, b in samples) / 1024, 1)}


def run_tick(srv: Server, run_id: int, seen, top, k: int):
    return srv.post("live.children", [("tick", "n_intervals", k), ("run-id", "data", run_id)],
                    [("seen", "data", seen), ("generation", "value", top),
                     ("generation", "max", top)], "tick.n_intervals")


def posterior(srv: Server, run_id: int, t: int):
    return srv.post("marginals-graph.figure",
                    [("generation", "value", t), ("model", "value", 0),
                     ("pair-x", "value", "a"), ("pair-y", "value", "b")],
                    [("run-id", "data", run_id)], "generation.value")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--generations", type=int, default=50)
    ap.add_argument("--particles", type=int, default=100_000)
    ap.add_argument("--dir", default=None, help="where the databases go (default: a temp dir)")
    args = ap.parse_args()
    folder = Path(args.dir or tempfile.mkdtemp(prefix="dabc-dash-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = {"load_before": os.getloadavg(), "cases": {}}

    # (a) many runs
    many = folder / "many.db"
    tic = time.perf_counter()
    if not many.exists():
        h = writer(many)
        for i in range(args.runs):
            write_run(h, 10, 1000, rng, running=i >= args.runs - 5)
        h.engine.dispose()
    out["write_many_s"] = round(time.perf_counter() - tic, 1)
    srv = Server(str(many))
    try:
        cases = out["cases"]
        cases["runs_page_tick"] = summary([srv.post(
            "runs-table.children", [("tick", "n_intervals", k)], [], "tick.n_intervals")
            for k in range(args.repeats)])
        last = args.runs
        cases["open_runs_page"] = summary([srv.post(
            "page.children", [("url", "pathname", "/")], [], "url.pathname")
            for _ in range(args.repeats)])
        cases["open_run_page"] = summary([srv.post(
            "page.children", [("url", "pathname", f"/run/{last}")], [], "url.pathname")
            for _ in range(args.repeats)])
        run_tick(srv, last, None, None, 0)
        cases["run_page_tick"] = summary([run_tick(srv, last, 10, 9, k)
                                          for k in range(args.repeats)])
        cases["run_page_tick_new_generation"] = summary(
            [run_tick(srv, last, 9, 8, k) for k in range(args.repeats)])
        cases["runs_page_tick"]["database"] = f"{args.runs} runs x 10 generations x 1,000"
    finally:
        srv.stop()
        dashboard_data.clear_caches()

    # (b) one big run
    big = folder / "big.db"
    tic = time.perf_counter()
    if not big.exists():
        h = writer(big)
        write_run(h, args.generations, args.particles, rng, running=True)
        h.engine.dispose()
    out["write_big_s"] = round(time.perf_counter() - tic, 1)
    out["big_db_mb"] = round(big.stat().st_size / 2**20, 1)
    srv = Server(str(big))
    try:
        g = args.generations
        first = [posterior(srv, 1, t) for t in range(min(g, args.repeats))]
        out["cases"]["posterior_first_look"] = summary(first)
        out["cases"]["posterior_cached"] = summary(
            [posterior(srv, 1, t % min(g, args.repeats)) for t in range(args.repeats)])
        run_tick(srv, 1, None, None, 0)
        out["cases"]["big_run_page_tick"] = summary([run_tick(srv, 1, g, g - 1, k)
                                                     for k in range(args.repeats)])
        out["cases"]["big_run_page_tick_new_generation"] = summary(
            [run_tick(srv, 1, g - 1, g - 2, k) for k in range(args.repeats)])
        for name in ("posterior_first_look", "posterior_cached", "big_run_page_tick",
                     "big_run_page_tick_new_generation"):
            out["cases"][name]["database"] = \
                f"1 run x {g} generations x {args.particles:,} particles"
    finally:
        srv.stop()
    out["load_after"] = os.getloadavg()
    out["target_ms"] = 200
    out["folder"] = str(folder)
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
