"""dabc.stan: Stan fleets on a real Dask LocalCluster, with a real httpstan compilation.

Nothing is mocked. The Bernoulli program is compiled once per session (about a minute; it goes
into a fresh temporary cache, so a clean machine behaves like this one) and shared by every
test. The cluster has two worker processes with one thread each, and every worker gets its own
temporary cache directory (``PrivateCacheDir``): the compiled artifact can only reach a worker
as bytes sent by the client, never through a shared folder.

Known answers: with a Beta(1, 1) prior and k successes in N Bernoulli trials the posterior is
Beta(1 + k, 1 + N - k), mean (1 + k) / (2 + N). Each fit's posterior mean must lie within 3
Monte Carlo standard errors (ArviZ's ESS-based MCSE of the mean) of it. The seeds are fixed,
so the draws, and so the outcome, are the same on every run.
"""

from __future__ import annotations

import multiprocessing as mp
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

import dabc
from dabc.stan import (
    PrivateCacheDir,
    StanDataError,
    StanEnvironmentError,
    StanModel,
    materialise,
    sample_many,
    stan_simulator,
    stats,
    worker_stats,
)

pytestmark = pytest.mark.timeout(900)  # the session's one compilation runs in the first test

BERNOULLI = """
data {
  int<lower=0> N;
  array[N] int<lower=0, upper=1> y;
}
parameters {
  real<lower=0, upper=1> theta;
}
model {
  theta ~ beta(1, 1);
  y ~ bernoulli(theta);
}
generated quantities {
  int k_rep = binomial_rng(N, theta);
}
"""

THETAS = [0.05, 0.15, 0.3, 0.45, 0.55, 0.7, 0.85, 0.95]


def bernoulli_datasets(n: int = 60, seed: int = 0) -> dict[str, dict]:
    rng = np.random.default_rng(seed)
    return {f"theta={t}": {"N": n, "y": (rng.random(n) < t).astype(int)} for t in THETAS}


def beta_posterior_mean(data: dict) -> float:
    k, n = int(np.sum(data["y"])), int(data["N"])
    return (1 + k) / (2 + n)


@pytest.fixture(scope="session")
def stan_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("dabc-stan-cache")


@pytest.fixture(scope="session")
def bernoulli(stan_cache):
    """The one real compilation of the session, into a fresh temporary cache."""
    dabc.stan.reset_stats()
    model = StanModel(BERNOULLI, name="bernoulli", cache_dir=stan_cache)
    assert model.compiled
    return model


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0",
                      worker_dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as c:
        c.register_plugin(PrivateCacheDir())
        yield c


def test_compiled_once_then_reused_from_cache(bernoulli, stan_cache):
    assert stats()["compilations"] == 1
    again = StanModel(BERNOULLI, name="bernoulli", cache_dir=stan_cache)
    assert not again.compiled
    assert again.hash == bernoulli.hash
    assert stats()["compilations"] == 1
    # the artifact is the compiled module as compressed bytes with its SHA-256
    art = bernoulli.artifact
    assert len(art.hash) == 64 and art.size > 1_000_000
    assert 0 < art.compressed_size < art.size
    # a model sent with a task carries no bytes: they travel once per worker, not per task
    assert len(pickle.dumps(bernoulli)) < 50_000


def test_fleet_matches_beta_posteriors_and_ships_once_per_worker(bernoulli, client, stan_cache):
    datasets = bernoulli_datasets()
    fleet = sample_many(bernoulli, datasets, client=client, chains=4, draws=1000, seed=2024)
    seen = [fit.dataset for fit in fleet]  # as they complete
    assert sorted(seen) == sorted(datasets)
    assert not fleet.failures

    table = fleet.table
    theta = table[table.parameter == "theta"].set_index("dataset")
    for name, data in datasets.items():
        exact = beta_posterior_mean(data)
        row = theta.loc[name]
        assert row.r_hat < 1.01 and row.ess_bulk > 400, row
        z = (row["mean"] - exact) / row["mcse_mean"]
        assert abs(z) < 3, f"{name}: mean {row['mean']:.4f}, exact {exact:.4f}, z={z:.2f}"
        idata = fleet.inference_data[("bernoulli", name)]
        assert idata.posterior["theta"].shape == (4, 1000)
        assert float(idata.posterior["theta"].mean()) == pytest.approx(row["mean"])

    # one compilation in all (here, none on the workers); each worker received the artifact
    # once, wrote it once into its own cache and loaded it at most once
    assert stats()["compilations"] == 1
    per_worker = worker_stats(client)
    assert len(per_worker) == 2
    dirs = {s["cache_dir"] for s in per_worker.values()}
    assert len(dirs) == 2 and str(stan_cache) not in {d[:len(str(stan_cache))] for d in dirs}
    for s in per_worker.values():
        assert s["compilations"] == 0
        assert s["artifacts_received"] == {bernoulli.hash: 1}
        assert s["materialisations"] == {bernoulli.hash: 1}
        assert s["loads"].get(bernoulli.hash, 0) <= 1
    assert sum(s["loads"].get(bernoulli.hash, 0) for s in per_worker.values()) >= 1

    # a second fleet with the same model ships nothing again
    sample_many(bernoulli, dict(list(datasets.items())[:2]), client=client, draws=100,
                seed=1).wait()
    for s in worker_stats(client).values():
        assert s["artifacts_received"] == {bernoulli.hash: 1}
        assert s["materialisations"] == {bernoulli.hash: 1}


def test_same_seed_same_draws_locally_and_on_the_cluster(bernoulli, client):
    datasets = dict(list(bernoulli_datasets().items())[:3])
    remote = sample_many(bernoulli, datasets, client=client, chains=2, draws=200, seed=7)
    local = sample_many(bernoulli, datasets, chains=2, draws=200, seed=7)
    for a, b in zip(remote.fits, local.fits, strict=True):
        assert a.dataset == b.dataset and a.seed == b.seed
        np.testing.assert_array_equal(a.posterior["theta"], b.posterior["theta"])


def test_failing_fits_are_reported_and_the_fleet_goes_on(bernoulli, client, capsys):
    datasets = bernoulli_datasets()
    datasets = {"good-1": datasets["theta=0.3"], "y out of bounds": {"N": 3, "y": [0, 2, 1]},
                "y missing": {"N": 3}, "good-2": datasets["theta=0.7"]}
    fleet = sample_many(bernoulli, datasets, client=client, chains=2, draws=200, seed=3,
                        progress=True)
    fits = {f.dataset: f for f in fleet.fits}
    assert fits["good-1"].ok and fits["good-2"].ok
    bad = fits["y out of bounds"]
    assert not bad.ok and bad.error_type == "StanDataError"
    assert "y[2] is 2, but must be less than or equal to 1" in bad.error
    missing = fits["y missing"]
    assert not missing.ok and "variable does not exist" in missing.error
    assert "variable name=y" in missing.error
    table = fleet.table
    assert table.loc[~table.ok, "error"].str.contains("Stan rejected the data").all()
    assert set(table.loc[table.ok, "dataset"]) == {"good-1", "good-2"}
    err = capsys.readouterr().err
    assert "4/4 fits, 2 failed" in err and "y[2] is 2" in err


def test_stan_syntax_error_is_a_clear_input_error(tmp_path):
    broken = "parameters { real x } model { x ~ normal(0, 1); }"
    with pytest.raises(dabc.InputError) as info:
        StanModel(broken, cache_dir=tmp_path)
    msg = str(info.value)
    assert "Syntax error" in msg and '";" expected' in msg and "line 1" in msg
    # stanc's message, not a chain of exceptions from inside the compiler driver
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert stats()["compilations"] <= 1  # nothing was compiled for it


def test_data_errors_in_a_single_fit(bernoulli):
    with pytest.raises(StanDataError, match="variable does not exist.*variable name=y"):
        bernoulli.sample({"N": 4})
    with pytest.raises(dabc.InputError, match="must be numeric"):
        bernoulli.sample({"N": 1, "y": ["a"]})
    fit = bernoulli.sample({"N": 4, "y": [0, 1, 1, 1]}, chains=1, draws=100, seed=1)
    assert fit.ok and fit.posterior["theta"].shape == (1, 100)


def test_environment_mismatch_says_what_differs(bernoulli, tmp_path):
    import dataclasses

    env = dict(bernoulli.artifact.environment, **{"python version": "2.7.18 (elsewhere)"})
    foreign = dataclasses.replace(bernoulli.artifact, environment=env)
    with pytest.raises(StanEnvironmentError) as info:
        materialise(foreign, root=tmp_path)
    msg = str(info.value)
    assert "python version: built with '2.7.18 (elsewhere)'" in msg
    assert sys.version in msg and "identical environment" in msg


def test_artifact_not_shipped_is_explained(bernoulli, tmp_path):
    with pytest.raises(StanEnvironmentError, match="has not been sent to this process"):
        materialise(dataclasses_replace_hash(bernoulli.artifact.without_data()), root=tmp_path)


def dataclasses_replace_hash(artifact):
    import dataclasses

    return dataclasses.replace(artifact, hash="0" * 64)


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs fork")
def test_forked_child_can_sample_after_parent_loaded_the_model(bernoulli):
    bernoulli.sample({"N": 2, "y": [0, 1]}, chains=1, draws=50, seed=1)  # loaded here
    with mp.get_context("fork").Pool(1) as pool:
        mean = pool.apply(_child_mean, (bernoulli,))
    assert 0 < mean < 1


def _child_mean(model) -> float:
    fit = model.sample({"N": 4, "y": [0, 1, 1, 1]}, chains=1, draws=200, seed=5)
    return float(fit.posterior["theta"].mean())


def test_generated_quantities_as_abc_simulator(bernoulli, tmp_path):
    """k_rep ~ Binomial(N, theta) simulated by Stan; with epsilon 0 the ABC posterior is the
    exact posterior Beta(1 + k, 1 + N - k)."""
    n, k = 20, 6
    sim = stan_simulator(bernoulli, data={"N": n, "y": [0] * n}, statistics=["k_rep"])
    out = sim({"theta": 0.3}, np.random.default_rng(1))
    assert set(out) == {"k_rep"} and float(out["k_rep"]).is_integer()
    abc = dabc.ABCSMC(sim, dabc.Prior(theta=dabc.RV("uniform", 0, 1)),
                      distance=lambda a, b: abs(a["k_rep"] - b["k_rep"]), population_size=300,
                      sampler=dabc.SingleCoreSampler(), seed=3,
                      epsilon=dabc.ListEpsilon([3, 1, 0]), progress=False)
    history = abc.run({"k_rep": k}, db=f"sqlite:///{tmp_path / 'abc.db'}", max_generations=3)
    df, w = history.get_distribution()
    a, b = 1 + k, 1 + n - k
    exact_mean, exact_sd = a / (a + b), np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    ess = 1 / np.sum(w**2)
    est = float(np.sum(df["theta"].to_numpy() * w))
    # same tolerance rule as test_known_answers: 4 standard errors with design effect 1.75
    assert abs(est - exact_mean) < 4 * 1.75 * exact_sd / np.sqrt(ess)


def test_cmdstanpy_backend_without_cmdstan_is_explained():
    from dabc.stan import _cmdstan

    if _cmdstan.available():
        pytest.skip("CmdStan is installed here; this checks the message when it is not")
    with pytest.raises(dabc.InputError, match="CmdStan is not installed"):
        StanModel(BERNOULLI, backend="cmdstanpy")


def test_tbb_linkage_is_detected_from_ldd_output():
    from dabc.stan._cmdstan import tbb_links

    ldd = (
        "\tlinux-vdso.so.1 (0x00007ffd)\n"
        "\tlibtbb.so.2 => /home/ci/.cmdstan/cmdstan-2.36.0/stan/lib/stan_math/lib/tbb/libtbb.so.2"
        " (0x00007f)\n"
        "\tlibstdc++.so.6 => /lib/x86_64-linux-gnu/libstdc++.so.6 (0x00007f)\n"
    )
    assert tbb_links(ldd) == {
        "libtbb.so.2": "/home/ci/.cmdstan/cmdstan-2.36.0/stan/lib/stan_math/lib/tbb/libtbb.so.2"}
    assert tbb_links("\tlibtbb.so.2 => not found\n") == {"libtbb.so.2": None}


@pytest.mark.slow
def test_compile_on_a_worker(client):
    """A second real compilation, on a worker (its private cache), then a fit there."""
    program = BERNOULLI.replace("beta(1, 1)", "beta(2, 2)")
    model = StanModel(program, name="beta22", client=client)
    assert model.compiled and model.compiled_on == "worker"
    assert sum(s["compilations"] for s in worker_stats(client).values()) == 1
    data = {"N": 10, "y": [1] * 7 + [0] * 3}
    fit = sample_many(model, [data], client=client, chains=4, draws=1000, seed=5).fits[0]
    row = fit.summary.set_index("parameter").loc["theta"]
    assert abs(row["mean"] - (2 + 7) / (4 + 10)) < 3 * row["mcse_mean"]


# --- the environment check: what matters for a compiled module, resolved ---------------------


def test_environment_records_the_resolved_interpreter(bernoulli, tmp_path):
    import dataclasses
    import os

    env = bernoulli.artifact.environment
    assert env["python executable (resolved)"] == os.path.realpath(sys.executable)
    assert "python executable" not in env  # the unresolved path does not matter
    elsewhere = dict(env, **{"python executable (resolved)": "/elsewhere/bin/python3.11"})
    with pytest.raises(StanEnvironmentError) as info:
        materialise(dataclasses.replace(bernoulli.artifact, environment=elsewhere), root=tmp_path)
    msg = str(info.value)
    assert ("python executable (resolved): built with '/elsewhere/bin/python3.11', here "
            f"{os.path.realpath(sys.executable)!r}") in msg
    assert "python version" not in msg  # only the field that differs is named


CLIENT_SCRIPT = r"""
import json, sys
import numpy as np
from distributed import Client
from dabc.stan import StanModel, sample_many, stats, worker_stats

code, cache, scheduler_file = sys.argv[1:4]
with Client(scheduler_file=scheduler_file, timeout=60) as client:
    model = StanModel(code, name="bernoulli", cache_dir=cache)
    data = {"a": {"N": 4, "y": [0, 1, 1, 1]}, "b": {"N": 3, "y": [0, 0, 1]}}
    fleet = sample_many(model, data, client=client, chains=2, draws=200, seed=11)
    print(json.dumps({
        "client": sys.executable, "compiled": model.compiled,
        "workers": sorted(client.run(lambda: sys.executable).values()),
        "ok": [f.ok for f in fleet.fits], "errors": [f.error for f in fleet.fits],
        "received": [s["artifacts_received"] for s in worker_stats(client).values()],
    }))
"""


def _start(cmd: list[str], **kwargs):
    import subprocess

    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, **kwargs)


def _stop(proc) -> None:
    import os
    import signal
    import subprocess

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the group of the process this test started
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_fleet_with_python_client_and_dask_worker_of_one_venv(bernoulli, stan_cache, tmp_path):
    """The reported defect: a client run with ``venv/bin/python`` and a worker started with the
    venv's ``dask worker`` (shebang ``venv/bin/python3``) are one interpreter through two
    symlinks; the fleet must run (it was refused with StanEnvironmentError)."""
    import json
    import os
    import subprocess
    import time

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(venv)], check=True, timeout=120)
    bin_dir = venv / "bin"
    if sys.prefix != sys.base_prefix:
        # the suite runs in a virtual environment itself (scripts/test.sh's .venv): a venv made
        # from it sees the *base* interpreter's packages, not the suite's (where dabc and
        # httpstan are). Show it the suite's site directories, with their .pth files (dabc's
        # editable install is one), so client and worker run the code under test.
        import site
        import sysconfig

        purelib = Path(sysconfig.get_path("purelib", vars={"base": str(venv),
                                                              "platbase": str(venv)}))
        dirs = [d for d in site.getsitepackages() if d.startswith(sys.prefix)]
        (purelib / "_dabc_suite.pth").write_text(
            "".join(f"import site; site.addsitedir({d!r})\n" for d in dirs))
    # the `dask` console script exactly as pip writes it into the venv (the base
    # interpreter's own copy, with the venv's shebang)
    dask_script = bin_dir / "dask"
    dask_script.write_text(
        f"#!{bin_dir / 'python3'}\n# -*- coding: utf-8 -*-\nimport re\nimport sys\n"
        "from dask.__main__ import main\nif __name__ == '__main__':\n"
        "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
        "    sys.exit(main())\n")
    dask_script.chmod(0o755)
    assert (bin_dir / "python").is_symlink() or (bin_dir / "python3").is_symlink()
    assert str(bin_dir / "python") != str(bin_dir / "python3")

    scheduler_file = tmp_path / "scheduler.json"
    worker_env = dict(os.environ, DABC_CACHE_DIR=str(tmp_path / "worker-cache"))
    scheduler = _start([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1",
                        "--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file)])
    worker = None
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            assert scheduler.poll() is None and time.monotonic() < deadline, \
                scheduler.stderr.read().decode()[-2000:]
            time.sleep(0.2)
        worker = _start([str(dask_script), "worker", "--scheduler-file", str(scheduler_file),
                         "--host", "127.0.0.1", "--nthreads", "1", "--nworkers", "1",
                         "--no-dashboard", "--local-directory", str(tmp_path / "worker-dir")],
                        env=worker_env)
        client = subprocess.run(
            [str(bin_dir / "python"), "-c", CLIENT_SCRIPT, BERNOULLI, str(stan_cache),
             str(scheduler_file)], capture_output=True, text=True, timeout=300,
            env=dict(os.environ, DABC_CACHE_DIR=str(stan_cache)))
        assert client.returncode == 0, client.stderr[-3000:]
        out = json.loads(client.stdout.strip().splitlines()[-1])
    finally:
        if worker is not None:
            _stop(worker)
        _stop(scheduler)
    # the situation of the report: two symlink names of one interpreter
    assert out["client"] == str(bin_dir / "python")
    assert out["workers"] == [str(bin_dir / "python3")]
    assert os.path.realpath(out["client"]) == os.path.realpath(out["workers"][0])
    assert out["ok"] == [True, True], out["errors"]
    assert not out["compiled"]  # the session's module is reused: one resolved interpreter
    assert out["received"] == [{bernoulli.hash: 1}]


# --- dabc._compat.httpstan on the installed httpstan ------------------------------------------


def test_compat_httpstan_versions_are_the_checked_ones():
    import importlib.metadata

    from dabc._compat import httpstan as compat

    v = compat.versions()
    assert v["httpstan"] == importlib.metadata.version("httpstan")
    assert v["pystan"] == importlib.metadata.version("pystan")
    # installing another httpstan must be re-checked: then add it to CHECKED_VERSIONS
    assert v["httpstan"] in compat.CHECKED_VERSIONS["httpstan"], v
    assert v["pystan"] in compat.CHECKED_VERSIONS["pystan"], v


def test_compat_httpstan_incompatible_names_the_versions(caplog):
    from dabc._compat import httpstan as compat

    err = compat.incompatible("the thing", KeyError("x"))
    assert isinstance(err, dabc.DabcError) and not isinstance(err, RuntimeError | ValueError)
    msg = str(err)
    assert f"installed httpstan {compat.versions()['httpstan']}" in msg
    assert "checked on httpstan 4.13.0" in msg and "pip install 'httpstan==4.13.0'" in msg
    assert "the thing" in msg and "KeyError" in msg and "backend='cmdstanpy'" in msg
    with caplog.at_level("INFO", logger="dabc.stan"):
        compat._VERSION_NOTED = False
        compat.note_version()
    assert not caplog.records  # a checked version is not worth a word


def test_compat_httpstan_model_name_library_dir_and_stanc():
    import subprocess

    import httpstan.models

    from dabc._compat import httpstan as compat

    ident = compat.model_name(BERNOULLI)
    assert httpstan.models.calculate_model_name(BERNOULLI) == f"models/{ident}"
    assert len(ident) == 8
    lib = compat.library_dir()
    assert lib.is_dir() and any(p.name.startswith("libtbb") for p in lib.iterdir())
    with compat.stanc_executable() as exe:
        proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and "stanc" in proc.stdout.lower()


def test_compat_httpstan_build_load_defaults_and_service(bernoulli):
    """build_module made the session's module (fixture ``bernoulli``); load it, read the
    defaults and run a service through the socket protocol."""
    from dabc._compat import httpstan as compat
    from dabc.stan import _httpstan

    assert bernoulli.artifact.filename.startswith("stan_services_model_")
    path = materialise(bernoulli.artifact)
    module = _httpstan.in_stan_thread(compat.load_services_module, path)
    assert all(hasattr(module, f) for f in compat.SERVICE_FUNCTIONS)
    defaults = compat.service_defaults(module, "hmc_nuts_diag_e_adapt", "SAMPLE")
    assert {"num_warmup", "num_samples", "delta", "max_depth", "stepsize"} <= set(defaults)
    assert "random_seed" not in defaults and "chain" not in defaults
    with pytest.raises(compat.HttpstanCompatError, match="no_such_service"):
        compat.service_defaults(module, "no_such_service")
    data = {"N": 3, "y": [0, 1, 1]}
    draws, logs = compat.run_service(module.fixed_param_wrapper, data, {"theta": 0.4},
                                     _httpstan.stan_thread().submit, random_seed=3, chain=1,
                                     init_radius=0.0, num_samples=5, num_thin=1, refresh=0)
    assert len(draws) == 5 and all(d["theta"] == pytest.approx(0.4) for d in draws)
    assert all(0 <= d["k_rep"] <= 3 for d in draws)
    assert all(isinstance(m, str) for m in logs)
    with pytest.raises((RuntimeError, ValueError), match="y"):
        compat.run_service(module.fixed_param_wrapper, {"N": 3}, {},
                           _httpstan.stan_thread().submit, random_seed=3, chain=1,
                           init_radius=0.0, num_samples=1, num_thin=1, refresh=0)


def test_compat_httpstan_loader_and_messages_fail_clearly(tmp_path):
    from dabc._compat import httpstan as compat

    not_a_module = tmp_path / "stan_services.txt"
    not_a_module.write_text("nothing")
    with pytest.raises(compat.HttpstanCompatError, match="not an extension module"):
        compat.load_services_module(not_a_module)
    draws, logs = compat.parse_messages([
        b'{"topic": "logger", "values": ["info:Iteration: 1"]}\n'
        b'{"topic": "sample", "values": {"theta": 0.5}}\n\n',
        b'{"topic": "sample", "values": {"theta": 0.25}}\n'])
    assert draws == [{"theta": 0.5}, {"theta": 0.25}] and logs == ["info:Iteration: 1"]
    with pytest.raises(compat.HttpstanCompatError, match="socket message.*checked on httpstan"):
        compat.parse_messages([b"\x08\x01protobuf\n"])
    with pytest.raises(compat.HttpstanCompatError):
        compat.parse_messages([b'{"values": []}\n'])
    assert compat.clean_message("in '/tmp/x/model_abc123.stan', line 3") == \
        "in 'program.stan', line 3"


# --- errors and logging -------------------------------------------------------------------------


def test_stan_errors_are_dabc_errors():
    from dabc.stan import StanFitError

    assert issubclass(StanFitError, dabc.DabcError) and issubclass(StanFitError, RuntimeError)
    assert issubclass(StanDataError, dabc.InputError)
    assert issubclass(StanEnvironmentError, dabc.InputError)


def test_logging_of_compilation_materialisation_and_failed_fits(bernoulli, stan_cache, tmp_path,
                                                                caplog, monkeypatch):
    from dabc.stan import artifact as store

    # forget where this process keeps the file, so that materialise writes it again
    monkeypatch.delitem(store._PATHS, bernoulli.hash)
    with caplog.at_level("INFO", logger="dabc.stan"):
        materialise(bernoulli.artifact, root=tmp_path / "fresh")
        StanModel(BERNOULLI, name="bernoulli", cache_dir=stan_cache)
        sample_many(bernoulli, {"bad": {"N": 3}}, chains=1, draws=10, seed=1).wait()
    text = [r.getMessage() for r in caplog.records if r.name == "dabc.stan"]
    assert any("reusing the compiled httpstan model" in t for t in text), text
    assert any("materialised Stan artifact" in t and "fresh" in t for t in text), text
    failed = [r for r in caplog.records if "failed (StanDataError)" in r.getMessage()]
    assert failed and failed[0].levelname == "WARNING" and "'bad'" in failed[0].getMessage()
