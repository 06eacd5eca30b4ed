"""The scaling study (issue 11, point 5): ``dabc.cluster.scaling_study`` and ``dabc scaling``.

One real Dask LocalCluster (loopback, no HTTP port) serves the library tests: the study
scales it to 1, 2 and 4 workers with a short sleeping workload. The table is checked
against its own definitions (speed-up, efficiency and core-hours from the wall times), the
wall times against the physical lower bound of the sleeps, the populations against a
single-core run of the same analysis (the DYN determinism contract), and the knee against
the table. The knee rule itself is tested on constructed tables. The command line runs once
on its own local cluster (1 worker) and on bad input. The study runs once more on
dabc.cluster.SLURMCluster (real single-node SLURM, TLS, 1 and 2 worker jobs).
"""

from __future__ import annotations

import logging
import math
import os
import sys

import numpy as np
import pandas as pd
import pytest

import dabc
from dabc.cli.main import main
from dabc.cluster import ScalingResult, scaling_study
from dabc.cluster.scaling import (
    COLUMNS,
    WORKLOADS,
    find_knee,
    fingerprint,
    knee_sentence,
    parse_workers,
)

POPULATION, GENERATIONS = 30, 2  # sleep10: about 75 simulations, 0.75 s of sleep in all


@pytest.fixture(scope="module")
def cluster():
    from dabc.samplers.dask import local_cluster

    c = local_cluster(n_workers=1)  # the study gives it back with one worker: reused
    yield c
    c.close()


@pytest.fixture(scope="module")
def study(cluster, tmp_path_factory):
    """The study of the sleep10 workload at 1, 2 and 4 workers, written to CSV and PNG."""
    out = tmp_path_factory.mktemp("scaling")
    result = scaling_study(workers="4,1,2", cluster=cluster, workload="sleep10",
                           population_size=POPULATION, max_generations=GENERATIONS)
    return result, result.to_csv(out / "scaling.csv"), out / "scaling.png"


# --- the knee rule -------------------------------------------------------------------------
@pytest.mark.parametrize("workers, efficiency, threshold, knee", [
    ([1, 2, 4, 8], [1.0, 0.93, 0.81, 0.62], 0.7, 4),
    ([1, 2, 4, 8], [1.0, 0.93, 0.81, 0.72], 0.7, 8),        # never falls below: the largest
    ([8, 1, 4, 2], [0.72, 1.0, 0.81, 0.93], 0.7, 8),        # order of the input is irrelevant
    ([1, 2, 4, 8], [1.0, 0.6, 0.75, 0.9], 0.7, 1),          # a later rise does not count
    ([1, 2, 4, 8], [1.0, 0.93, 0.81, 0.62], 0.9, 2),
    ([1, 2, 4], [1.0, 0.7, 0.5], 0.7, 2),                   # exactly at the threshold keeps
    ([1, 2, 4], [1.0, 0.99, 0.98], 1.0, 1),                 # threshold 1: only perfect counts
    ([4, 8, 16], [0.6, 0.5, 0.4], 0.7, None),               # no count meets the threshold
    ([4, 8], [0.95, 0.4], 0.99, None),                      # ... nor this stricter one
    ([1, 2, 4], [1.0, math.nan, 0.9], 0.7, 1),              # NaN counts as below
    ([], [], 0.7, None),
])
def test_knee_rule_on_constructed_tables(workers, efficiency, threshold, knee):
    assert find_knee(workers, efficiency, threshold) == knee
    table = pd.DataFrame({"workers": workers, "wall_s": np.ones(len(workers)),
                          "speedup": np.ones(len(workers)), "efficiency": efficiency})
    result = ScalingResult(table, threshold=threshold)
    assert result.knee == knee
    assert result.identical  # no population column: nothing to flag


def test_knee_sentences():
    s = knee_sentence([1, 2, 4, 8], [1.0, 0.93, 0.81, 0.62])
    assert s == ("more than 4 workers are not worth it for this problem (efficiency 0.62 at 8, "
                 "below 0.7)")
    assert knee_sentence([1, 2], [1.0, 0.4]).startswith("more than 1 worker is not worth it")
    s = knee_sentence([1, 2, 4, 8], [1.0, 0.93, 0.81, 0.62], cores_per_worker=4)
    assert s.startswith("more than 4 workers (16 cores) are not worth it")
    s = knee_sentence([1, 2, 4], [1.0, 0.9, 0.8])
    assert "every count up to 4 workers keeps efficiency >= 0.7" in s and "beyond 4" in s
    s = knee_sentence([4, 8], [0.6, 0.5])
    assert s.startswith("no worker count keeps efficiency >= 0.7 (efficiency 0.60 at 4 workers")
    assert "only 2 workers measured" in knee_sentence([2], [1.0])


@pytest.mark.parametrize("threshold", [0, -0.1, 1.5, "a", None, math.nan])
def test_threshold_outside_0_1_is_refused(threshold):
    with pytest.raises(dabc.InputError, match="threshold"):
        find_knee([1, 2], [1.0, 0.9], threshold)


def test_flagged_populations_appear_in_summary():
    table = pd.DataFrame({"workers": [1, 2, 4], "cores": [1, 2, 4], "wall_s": [4.0, 2.0, 1.6],
                          "speedup": [1.0, 2.0, 2.5], "efficiency": [1.0, 1.0, 0.625],
                          "same_population": [True, True, False]})
    result = ScalingResult(table)
    assert not result.identical and result.knee == 2
    assert "WARNING: the populations at 4 workers differ from those at 1" in result.summary


@pytest.mark.parametrize("workers", ["0", "a,b", "", [1, 0], [1.5], [-2], ",,"])
def test_bad_worker_counts(workers):
    with pytest.raises(dabc.InputError, match="at least 1|at least one"):
        parse_workers(workers)


def test_worker_counts_are_sorted_and_distinct():
    assert parse_workers("8, 2,4,2") == [2, 4, 8]
    assert parse_workers((1, 2, 4)) == [1, 2, 4]


# --- the study on a real LocalCluster ------------------------------------------------------
def test_study_table_is_consistent_with_its_wall_times(study):
    result, _, _ = study
    t = result.table
    assert list(t.columns) == list(COLUMNS)
    assert t.workers.tolist() == [1, 2, 4]
    assert t.cores.tolist() == [1, 2, 4]  # one thread per worker
    assert (t.repeats == 1).all()
    np.testing.assert_allclose(t.speedup, t.wall_s.iloc[0] / t.wall_s)
    np.testing.assert_allclose(t.efficiency, t.speedup / t.workers)
    np.testing.assert_allclose(t.core_hours, t.wall_s * t.workers / 3600)
    np.testing.assert_allclose(t.sims_per_s, t.simulations / t.wall_s)
    assert t.efficiency.iloc[0] == 1.0
    np.testing.assert_allclose(t.wall_s, result.runs.wall_s)
    # each wall time is at least the sleeping the simulations did, spread over the workers
    sleep = WORKLOADS["sleep10"].sleep
    assert (t.wall_s >= t.simulations * sleep / t.workers).all(), t


def test_every_worker_count_gives_the_populations_of_a_single_core_run(study, tmp_path):
    result, _, _ = study
    t = result.table
    assert result.identical and t.same_population.all()
    assert t.population.nunique() == 1 and t.simulations.nunique() == 1
    assert (result.runs.generations == GENERATIONS).all()
    assert (result.runs.evaluations >= result.runs.simulations).all()
    abc = WORKLOADS["sleep10"].make_abc(POPULATION)(dabc.SingleCoreSampler())
    history = abc.run(WORKLOADS["sleep10"].observed(), db=f"sqlite:///{tmp_path}/one.db",
                      max_generations=GENERATIONS)
    assert fingerprint(history) == t.population.iloc[0]
    assert history.total_simulations == t.simulations.iloc[0]


def test_knee_agrees_with_the_table(study):
    result, _, _ = study
    t = result.table
    knee = result.knee
    assert knee == find_knee(t.workers.tolist(), t.efficiency.tolist(), 0.7)
    if knee is not None:
        assert (t.efficiency[t.workers <= knee] >= 0.7).all()
        later = t[t.workers > knee]
        if len(later):
            assert later.efficiency.iloc[0] < 0.7
            assert f"efficiency {later.efficiency.iloc[0]:.2f} at {later.workers.iloc[0]}" \
                in result.summary
            assert result.summary.startswith(f"more than {knee} worker")


def test_study_writes_csv_and_png(study):
    result, csv, png = study
    result.plot(png)
    back = ScalingResult.from_csv(csv)
    pd.testing.assert_frame_equal(back.table, result.table, check_dtype=False)
    assert back.knee == result.knee
    import matplotlib.image

    image = matplotlib.image.imread(png)
    assert image.shape[0] > 300 and image.shape[1] > 900  # three panels side by side
    assert image.std() > 0.05  # something is drawn


def test_plot_targets(study):
    from matplotlib.figure import Figure

    result, _, _ = study
    fig = Figure()
    assert result.plot(fig) is fig and len(fig.axes) == 3
    axes = Figure().subplots(1, 3)
    fig = result.plot(axes)
    assert axes[0].get_xscale() == "log" and axes[2].get_ylim()[0] == 0
    with pytest.raises(dabc.InputError, match="three panels"):
        result.plot(Figure().subplots(1, 2))


def test_plot_without_matplotlib_names_the_extra(study, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if absent
    with pytest.raises(dabc.InputError, match=r"pip install 'dabc\[viz\]'"):
        study[0].plot()


def test_cluster_is_scaled_back(cluster, study):
    from distributed import Client

    with Client(cluster) as client:
        assert len(client.nthreads()) == 1  # as before the study


def test_make_abc_without_a_seed_is_flagged(cluster, caplog):
    model = WORKLOADS["fast"].model

    def make_abc(sampler):  # no seed: every run analyses other random numbers
        return dabc.ABCSMC(model, WORKLOADS["fast"].prior(), population_size=20,
                           sampler=sampler)

    with caplog.at_level(logging.INFO, logger="dabc.cluster"):
        result = scaling_study(make_abc, {"y": 2.0}, workers=[1, 2], cluster=cluster,
                               max_generations=1)
    assert not result.identical
    assert result.table.same_population.tolist() == [True, False]
    assert "WARNING: the populations at 2 workers differ" in result.summary
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("different seeds" in m for m in warnings), warnings
    assert any("2 workers differ" in m for m in warnings), warnings
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("1 worker (repeat 1 of 1)" in m for m in infos), infos


def test_bad_input_fails_before_any_run(cluster):
    cases = [
        ({"workers": [0]}, "at least 1"),
        ({"threshold": 1.5}, "threshold"),
        ({"repeats": 0}, "repeats"),
        ({"workload": "sleep1000"}, "unknown workload 'sleep1000'.*sleep100"),
        ({"population_size": 0}, "population_size"),
        ({"cores_per_worker": 0}, "cores_per_worker"),
        ({"make_abc": lambda s: None}, "observed"),
        ({"make_abc": "abc", "observed": {"y": 1}}, "make_abc must be a function"),
        ({"cluster": object()}, "scale"),
        ({"db": None, "max_generations": 1, "cluster": cluster, "workers": [1],
          "make_abc": lambda s: None, "observed": {"y": 1}}, "must return an ABCSMC"),
    ]
    for kwargs, message in cases:
        with pytest.raises(dabc.InputError, match=message):
            scaling_study(**kwargs)


# --- the command line ----------------------------------------------------------------------
def test_cli_writes_both_files(tmp_path, capsys):
    out = tmp_path / "out"
    # one count keeps it quick (each worker process takes seconds to start on 2 busy cores);
    # the study at several counts is tested above, the parsing of --workers below
    rc = main(["scaling", "--workload", "sleep10", "--workers", "1", "--population", "20",
               "--generations", "2", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    table = pd.read_csv(out / "scaling.csv")
    assert table.workers.tolist() == [1] and table.same_population.all()
    assert list(table.columns) == list(COLUMNS)
    assert os.path.getsize(out / "scaling.png") > 10_000
    assert "knee: " in captured.out and "same population" in captured.out
    assert "scaling study: 1 worker (repeat 1 of 1)" in captured.err  # progress on stderr
    assert "knee: 1 (threshold 0.7): only 1 worker measured" in captured.out
    assert "Traceback" not in captured.err


@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "at least 1"),
    (["--workers", "a,b"], "whole numbers"),
    (["--threshold", "1.5"], "at most 1"),
    (["--threshold", "x"], "not a number"),
    (["--population", "0"], "at least 1"),
    (["--workload", "nope"], "invalid choice"),
])
def test_cli_usage_errors_exit_2(args, message, tmp_path, capsys):
    assert main(["scaling", *args, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_cli_unusable_out_dir_exits_1(tmp_path, capsys):
    missing = tmp_path / "no" / "such"
    assert main(["scaling", "--out", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dabc scaling: error: --out") and "does not exist" in err
    assert not missing.parent.exists()
    file = tmp_path / "f"
    file.write_text("")
    assert main(["scaling", "--out", str(file)]) == 1
    assert "not a folder" in capsys.readouterr().err


# --- on a real SLURM -----------------------------------------------------------------------
@pytest.mark.timeout(240)
def test_study_on_slurm_cluster(tmp_path):
    """The same study on dabc.cluster.SLURMCluster (real single-node SLURM, TLS, one job per
    worker): the jobs it scales to run the identical populations as the LocalCluster's, and
    it gives the jobs back (scaled to 0: no job of ours is left)."""
    from slurm import jobs, slurm_cluster, unique_job_name, wait_for

    name = unique_job_name("dabc-scaling")
    with slurm_cluster(tmp_path, job_name=name) as cluster:
        assert cluster.scheduler_address.startswith("tls://")
        result = scaling_study(workers=[1, 2], cluster=cluster, workload="sleep10",
                               population_size=POPULATION, max_generations=GENERATIONS,
                               worker_timeout=150)
        t = result.table
        assert t.workers.tolist() == [1, 2] and result.identical
        single = WORKLOADS["sleep10"].make_abc(POPULATION)(dabc.SingleCoreSampler())
        h = single.run(WORKLOADS["sleep10"].observed(), db=f"sqlite:///{tmp_path}/one.db",
                       max_generations=GENERATIONS)
        assert (t.population == fingerprint(h)).all()
        np.testing.assert_allclose(t.efficiency, t.wall_s.iloc[0] / t.wall_s / t.workers)
        assert "SLURMCluster" in result.title
        wait_for(lambda: not {j for j, (s, _) in jobs(name).items() if s == "RUNNING"}, 60,
             what="the study's worker jobs to end after it scaled the cluster back to 0")
