"""dabc's own local clusters work from a plain script without an ``if __name__ == "__main__":``
guard, and a sampler that cannot start leaves no run behind.

Each script is written to a file and run as ``python3 script.py`` in a fresh subprocess, as a
user runs it. A spawned Dask worker would run such a script again before it starts (hundreds of
lines of "Nanny failed to start" and, before the fix, three "failed" runs in the database);
dabc's local cluster forks its workers instead. Each script prints a marker line on its first
line, so a script that ran again in a worker shows it twice.

Without the fork (``distributed.worker.multiprocessing-method`` "spawn", the default) the
first test fails with rc 1, "RuntimeError" from multiprocessing's bootstrapping check, and
three runs in the database (one from the master, one from each re-run in a worker).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import dabc

MARK = "SCRIPT-STARTED"
HEADER = f"""\
import os
print("{MARK}", os.getpid(), flush=True)
"""
MODEL = """\
import numpy as np
import dabc


def model(params, rng):
    y = rng.normal(params["mu"], 1.0, size=5)
    return {"mean": y.mean()}


prior = dabc.Prior(mu=dabc.RV("norm", 0, 1))
"""


def _run_script(tmp_path, body: str, prelude: str = "",
                timeout: float = 180) -> subprocess.CompletedProcess:
    script = tmp_path / "script.py"
    script.write_text(HEADER + prelude + textwrap.dedent(body))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("DABC_NUM_PROCS", None)
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _started(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(MARK)]


def test_unguarded_script_with_the_dask_sampler_and_its_own_cluster(tmp_path):
    proc = _run_script(tmp_path, prelude=MODEL, body="""
    sampler = dabc.DaskDistributedSampler()
    abc = dabc.ABCSMC(model, prior, population_size=100, seed=42, sampler=sampler,
                      progress=False)
    history = abc.run({"mean": 1.03}, db="sqlite:///r.db", max_generations=2)
    params, weights = history.get_distribution()
    print("posterior mean", np.average(params["mu"], weights=weights))
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(_started(proc.stdout)) == 1, proc.stdout  # the script ran once, not per worker
    assert "posterior mean" in proc.stdout
    # what a worker re-running the script printed (Dask's own warnings under load may not)
    for sign in ("Nanny failed", "bootstrapping phase", "RuntimeError"):
        assert sign not in proc.stderr, proc.stderr[-3000:]
    runs = dabc.History(f"sqlite:///{tmp_path / 'r.db'}").all_runs()
    assert list(runs["status"]) == ["done"], runs
    assert dabc.History(f"sqlite:///{tmp_path / 'r.db'}").max_t == 1


def test_unguarded_script_worker_restart_and_signals(tmp_path):
    """A worker that dies is restarted by its nanny, forked again (the script still runs
    once); a forked worker has a fresh interpreter's SIGINT/SIGTERM handlers, not the
    master's (dabc's StopGuard during a run); the user's start method setting is back once
    the cluster is up."""
    proc = _run_script(tmp_path, """
    import signal
    import time

    import dask
    from distributed import Client

    from dabc.samplers.dask import local_cluster

    KEY = "distributed.worker.multiprocessing-method"
    signal.signal(signal.SIGTERM, lambda *a: None)  # a master's own handler
    cluster = local_cluster(n_workers=1)
    client = Client(cluster)
    print("config", dask.config.get(KEY), flush=True)

    def handlers():
        return (signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
                signal.getsignal(signal.SIGINT) is signal.default_int_handler)

    print("handlers", *list(client.run(handlers).values())[0], flush=True)
    (pid,) = client.run(os.getpid).values()
    print("worker", pid, flush=True)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            now = list(client.run(os.getpid).values())
        except Exception:
            continue
        if now and now[0] != pid:
            print("restarted", now[0], flush=True)
            break
    print("handlers", *list(client.run(handlers).values())[0], flush=True)
    client.close()
    cluster.close()
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert len(_started(out)) == 1, out
    assert "config spawn" in out, out  # distributed's default, restored
    assert out.count("handlers True True") == 2, out
    assert "restarted" in out, (out, proc.stderr[-3000:])
    master = int(_started(out)[0].split()[1])
    workers = [int(line.split()[1]) for line in out.splitlines()
               if line.startswith(("worker", "restarted"))]
    assert len(set(workers)) == 2 and master not in workers, out


def test_a_sampler_that_cannot_start_leaves_no_run(tmp_path, monkeypatch):
    """A Redis sampler pointed at a closed port: a clear InputError, and no run row (nor,
    for a resumed run, a changed status)."""
    from redis_server import free_port

    monkeypatch.setenv("DABC_REDIS_SECRET", "s" * 32)
    db = f"sqlite:///{tmp_path / 'r.db'}"
    model = _fast_model
    prior = dabc.Prior(mu=dabc.RV("norm", 0, 1))
    port = free_port()
    sampler = dabc.RedisEvalParallelSampler(host="127.0.0.1", port=port, password="pw")
    abc = dabc.ABCSMC(model, prior, population_size=20, seed=1, sampler=sampler,
                      progress=False)
    with pytest.raises(dabc.InputError, match=rf"Cannot reach Redis at 127.0.0.1:{port}"):
        abc.run({"mean": 1.0}, db=db, max_generations=2)
    assert abc.history is None
    import sqlalchemy as sa

    engine = sa.create_engine(db)
    with engine.connect() as c:
        tables = sa.inspect(c).get_table_names()
        count = c.execute(sa.text("SELECT count(*) FROM dabc_runs")).scalar() \
            if "dabc_runs" in tables else 0
    engine.dispose()
    assert count == 0

    # a stored run, resumed with a sampler that cannot start: its status stays "done"
    dabc.ABCSMC(model, prior, population_size=20, seed=1, sampler=dabc.SingleCoreSampler(),
                progress=False).run({"mean": 1.0}, db=db, max_generations=1)
    again = dabc.ABCSMC.load(db, sampler=dabc.RedisEvalParallelSampler(
        host="127.0.0.1", port=port, password="pw"))
    with pytest.raises(dabc.InputError, match="Cannot reach Redis"):
        again.run(max_generations=3)
    runs = dabc.History(db).all_runs()
    assert len(runs) == 1 and list(runs["status"]) == ["done"], runs


def _fast_model(params, rng):
    return {"mean": rng.normal(params["mu"], 1.0)}


@pytest.mark.slow
def test_unguarded_stan_fleet_on_dabcs_local_cluster(tmp_path):
    """The README's Stan fleet, with dabc's local cluster, as a plain script (compiles the
    program into a fresh cache: about a minute)."""
    pytest.importorskip("stan")
    proc = _run_script(tmp_path, f"""
    os.environ["DABC_CACHE_DIR"] = {str(tmp_path / "cache")!r}
    import numpy as np
    from distributed import Client
    from dabc.samplers.dask import local_cluster
    from dabc.stan import PrivateCacheDir, StanModel, sample_many

    model = StanModel(\"\"\"
    data {{ int<lower=0> N; array[N] int<lower=0, upper=1> y; }}
    parameters {{ real<lower=0, upper=1> theta; }}
    model {{ theta ~ beta(1, 1); y ~ bernoulli(theta); }}
    \"\"\", name="bernoulli")
    rng = np.random.default_rng(0)
    datasets = {{f"subject{{i}}": {{"N": 100, "y": (rng.random(100) < t).astype(int)}}
                for i, t in enumerate(np.linspace(0.1, 0.9, 4))}}
    with local_cluster(n_workers=2) as cluster, Client(cluster) as client:
        client.register_plugin(PrivateCacheDir())
        fleet = sample_many(model, datasets, client=client, chains=2, draws=500, seed=1)
        for fit in fleet:
            print("fit", fit.dataset, fit.ok, fit.error, flush=True)
    """, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(_started(proc.stdout)) == 1, proc.stdout
    fits = [line for line in proc.stdout.splitlines() if line.startswith("fit ")]
    assert len(fits) == 4 and all(" True None" in line for line in fits), proc.stdout



NO_FORK = """\
import dabc._compat.distributed_fork as forked
forked.fork_available = lambda: False  # as on a platform that cannot fork (Windows)
"""


def test_without_fork_an_unguarded_script_stops_at_once_with_one_line(tmp_path):
    proc = _run_script(tmp_path, prelude=NO_FORK + MODEL, body="""
    abc = dabc.ABCSMC(model, prior, population_size=50, seed=1,
                      sampler=dabc.DaskDistributedSampler(), progress=False)
    history = abc.run({"mean": 1.03}, db="sqlite:///r.db", max_generations=2)
    """)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    script = tmp_path / "script.py"
    run_line = next(i for i, text in enumerate(script.read_text().splitlines(), 1)
                    if "abc.run(" in text)
    assert lines[0].startswith(f"dabc: {script}, line {run_line}: "), lines
    assert 'if __name__ == "__main__":' in lines[0]
    assert len(_started(proc.stdout)) == 1
    assert dabc.History(f"sqlite:///{tmp_path / 'r.db'}").all_runs().empty  # no run row


def test_without_fork_a_guarded_script_works(tmp_path):
    proc = _run_script(tmp_path, prelude=NO_FORK + MODEL, body="""
    if __name__ == "__main__":
        abc = dabc.ABCSMC(model, prior, population_size=20, seed=1,
                          sampler=dabc.DaskDistributedSampler(), progress=False)
        history = abc.run({"mean": 1.03}, db="sqlite:///r.db", max_generations=1)
        print("generations", history.n_populations)
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "generations 1" in proc.stdout
    # spawned workers import the script (as __mp_main__): the marker shows once per worker
    assert len(_started(proc.stdout)) >= 2, proc.stdout
