"""A real single-node SLURM for the cluster tests: make sure it is up, and follow our jobs.

``slurm_cluster_ready`` (a session fixture) runs ``scripts/start-slurm.sh`` once; it FAILS
the test (never skips) with a clear message when SLURM cannot be started, because the
cluster code must be exercised for real. Test files import it
(``from slurm import slurm_cluster_ready``) so pytest sees it.

Every job a test submits carries a unique name (:func:`unique_job_name`); the helpers list,
wait for and cancel jobs by that name or by id only, never by user, so tests of other
helpers running on the same SLURM at the same time are left alone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import cloudpickle
import pytest

import redis_server

ROOT = Path(__file__).resolve().parents[1]
START_SCRIPT = ROOT / "scripts" / "start-slurm.sh"
HOW_TO_FIX = ("Run 'bash scripts/start-slurm.sh' (as root, or with sudo) to install and start "
              "a single-node SLURM on loopback, and see /var/log/slurm/*.log if it fails.")

_started: dict[str, str] = {}
_TOOLS: dict[str, str] = {}


def tool(name: str) -> str:
    """The absolute path of a SLURM command (found once, so a test may change PATH)."""
    if name not in _TOOLS:
        _TOOLS[name] = shutil.which(name) or name
    return _TOOLS[name]


def ensure_slurm() -> str:
    """Run ``scripts/start-slurm.sh`` (once per process) and return the default partition.

    Fails the calling test (``pytest.fail``, never a skip) when SLURM cannot be brought up.
    """
    if "partition" in _started:
        return _started["partition"]
    if not START_SCRIPT.exists():
        pytest.fail(f"{START_SCRIPT} is missing. {HOW_TO_FIX}", pytrace=False)
    try:
        proc = subprocess.run(["bash", str(START_SCRIPT)], capture_output=True, text=True,
                              timeout=600)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{START_SCRIPT} did not finish in 10 minutes. {HOW_TO_FIX}",
                    pytrace=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        pytest.fail(f"SLURM could not be started ({START_SCRIPT} exited with "
                    f"{proc.returncode}):\n{tail}\n{HOW_TO_FIX}", pytrace=False)
    for command in ("sbatch", "squeue", "scancel", "scontrol", "sinfo"):
        if shutil.which(command) is None:
            pytest.fail(f"{command} is not on PATH after {START_SCRIPT} ran. {HOW_TO_FIX}",
                        pytrace=False)
    out = subprocess.run([tool("sinfo"), "-h", "-o", "%P"], capture_output=True,
                         text=True).stdout
    default = [p.rstrip("*") for p in out.split() if p.endswith("*")]
    _started["partition"] = default[0] if default else (out.split() or ["debug"])[0]
    return _started["partition"]


@pytest.fixture(scope="session")
def slurm_cluster_ready() -> str:
    """SLURM is up (started by ``scripts/start-slurm.sh`` if needed); the default partition."""
    return ensure_slurm()


def unique_job_name(prefix: str = "dabc-test") -> str:
    """A job name no other test (or helper) uses: ``<prefix>-<12 hex digits>``."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def jobs(name: str) -> dict[str, tuple[str, str]]:
    """Our jobs named ``name`` still known to ``squeue``: ``{job_id: (state, reason)}``."""
    proc = subprocess.run([tool("squeue"), "-h", "--name", name, "-o", "%i|%T|%r"],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise AssertionError(f"squeue failed: {proc.stderr.strip()}")
    result = {}
    for line in proc.stdout.splitlines():
        if line.strip():
            job_id, state, reason = line.strip().split("|", 2)
            result[job_id] = (state, reason)
    return result


def job_state(job_id: str) -> str | None:
    """A job's state (``PENDING``, ``RUNNING``, ``COMPLETED``, ``TIMEOUT``, ...), or None once
    SLURM has forgotten it (MinJobAge after it ended)."""
    proc = subprocess.run([tool("scontrol"), "show", "job", "-o", str(job_id)],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        return None
    for field in proc.stdout.split():
        if field.startswith("JobState="):
            return field.split("=", 1)[1]
    return None


def wait_for(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    """:func:`redis_server.wait_for`, polling 5 times a second by default (predicates here
    mostly ask ``squeue``, which a shared ``slurmctld`` answers for every helper)."""
    return redis_server.wait_for(predicate, timeout, interval=interval, what=what)


def wait_job_state(job_id: str, states: str | tuple[str, ...], timeout: float = 60) -> str:
    """Wait until job ``job_id`` is in one of ``states`` (a state SLURM no longer knows counts
    as ``"GONE"``); return the state."""
    wanted = (states,) if isinstance(states, str) else tuple(states)

    def check():
        state = job_state(job_id) or "GONE"
        return state if state in wanted else None

    return wait_for(check, timeout, what=f"job {job_id} to reach {wanted}")


def wait_no_jobs(name: str, timeout: float = 60) -> None:
    """Wait until no job named ``name`` is pending or running any more."""
    def gone():
        return not any(s in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED")
                       for s, _ in jobs(name).values())

    wait_for(gone, timeout, what=f"the jobs named {name} to end")


def cancel(name: str | None = None, job_id: str | None = None, signal: str | None = None) -> None:
    """``scancel`` our jobs by name, or one job by id (never anything else)."""
    if (name is None) == (job_id is None):
        raise ValueError("give exactly one of name= and job_id=")
    cmd = [tool("scancel")]
    if signal:
        cmd += ["--signal", signal]
    cmd += ["--name", name] if name is not None else [str(job_id)]
    subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def job_output(job_id: str, directory: str | os.PathLike | None = None) -> str:
    """The text of a job's output file: ``StdOut`` from ``scontrol show job`` while SLURM knows
    the job, else ``<directory>/*-<job_id>.out`` / ``slurm-<job_id>.out``; "" when none."""
    paths: list[Path] = []
    proc = subprocess.run([tool("scontrol"), "show", "job", "-o", str(job_id)],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode == 0:
        for field in proc.stdout.split():
            if field.startswith(("StdOut=", "StdErr=")):
                paths.append(Path(field.split("=", 1)[1]))
    if directory is not None:
        paths.extend(sorted(Path(directory).glob(f"*{job_id}*.out")))
        paths.extend(sorted(Path(directory).glob(f"*{job_id}*.err")))
    seen, texts = set(), []
    for path in paths:
        if path in seen or not path.exists():
            continue
        seen.add(path)
        texts.append(path.read_text(errors="replace"))
    return "\n".join(texts)


# --- ABC runs on a SLURMCluster ---------------------------------------------------------------
# Shared by test_cluster_slurm.py and test_cluster_faults.py. This module is pickled by value
# (cloudpickle), so its models reach the workers in SLURM jobs whatever their sys.path.

cloudpickle.register_pickle_by_value(sys.modules[__name__])

SEED = 4_113_907
OBS = {"y": 1.0}


class GaussModel:
    """``y = x + 0.3 * noise``; sleeps ``sleep`` s per simulation only inside a SLURM job.

    The sleep makes generations last long enough for a fault to land mid-generation on the
    cluster, without slowing down the reference run in the test process; it changes nothing
    in the result (the randomness comes from ``rng`` alone).
    """

    def __init__(self, sleep: float = 0.0):
        self.sleep = sleep

    def __call__(self, p, rng):
        if self.sleep and "SLURM_JOB_ID" in os.environ:
            time.sleep(self.sleep)
        return {"y": p["x"] + 0.3 * rng.standard_normal()}


def worker_tls_paths(dask_worker) -> list[str]:
    """The certificate files a worker uses (for ``client.run``)."""
    s = dask_worker.security
    return [s.tls_ca_file, s.tls_worker_cert, s.tls_worker_key]


def prior():
    import dabc

    return dabc.Prior(x=dabc.RV("norm", 0, 1))


def abc_run(sampler, db: Path, *, n: int, gens: int, sleep: float = 0.0, seed: int = SEED):
    """One ABC-SMC run of :class:`GaussModel`; returns its History."""
    import dabc

    abc = dabc.ABCSMC(GaussModel(sleep), prior(), population_size=n, sampler=sampler,
                      seed=seed, progress=False)
    return abc.run(OBS, db=f"sqlite:///{db}", max_generations=gens)


_REFERENCES: dict[tuple, dict] = {}


def reference(tmp_path_factory, *, n: int, gens: int, seed: int = SEED) -> dict:
    """The run on ``MulticoreEvalParallelSampler(2)`` (cached per process): the expected
    result (a :func:`determinism.snapshot`)."""
    import dabc
    from determinism import snapshot

    key = (n, gens, seed)
    if key not in _REFERENCES:
        db = tmp_path_factory.mktemp("ref") / "ref.db"
        snap = snapshot(abc_run(dabc.MulticoreEvalParallelSampler(2), db, n=n, gens=gens,
                                seed=seed))
        assert len(snap["t"]) == gens
        _REFERENCES[key] = snap
    return _REFERENCES[key]


@contextlib.contextmanager
def slurm_cluster(log_directory: Path, **kwargs):
    """A :class:`dabc.cluster.SLURMCluster` on loopback with a unique job name (1 core,
    1 GB per job unless told otherwise); closed, and its jobs cancelled by name, at exit."""
    from dabc.cluster import SLURMCluster

    ensure_slurm()
    name = kwargs.pop("job_name", None) or unique_job_name()
    options = dict(cores=1, processes=1, memory="1GB", walltime="00:10:00", interface="lo",
                   log_directory=str(log_directory))
    options.update(kwargs)
    cluster = None
    try:
        cluster = SLURMCluster(job_name=name, **options)
        yield cluster
    finally:
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close(timeout=30)
        cancel(name=name)
        wait_no_jobs(name, timeout=60)
