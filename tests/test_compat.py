"""Each door of ``dabc._compat`` on the installed library versions, with real objects.

Where a module has a fallback for a future version without the private name, the fallback is
called directly here and compared with the private route, so that it is known to give the same
answer before the day it is needed. (``_compat.httpstan`` is exercised by ``test_stan.py``.)
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import dask
import dask.array as da
import numpy as np
import pytest
import scipy
import scipy.sparse as sp
import scipy.stats as st
import sklearn
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from dabc import RV
from dabc._compat import dask_array, futures
from dabc._compat import scipy as compat_scipy
from dabc._compat import sklearn as compat_sklearn
from dabc.learn import SAGAClassifier


def test_installed_versions_are_reported(capsys):
    """The versions this suite checked the doors on (visible with ``pytest -s``)."""
    versions = {"scipy": scipy.__version__, "scikit-learn": sklearn.__version__,
                "dask": dask.__version__}
    print("compat checked on:", versions)
    assert all(versions.values())


# --- scipy: rv_generic._parse_args --------------------------------------------------------

CASES = [
    ("norm", (1.0, 2.0), {}),
    ("norm", (), {"loc": 1.0, "scale": 2.0}),
    ("uniform", (-1.0,), {"scale": 2.0}),
    ("gamma", (2.0,), {"scale": 3.0}),
    ("gamma", (), {"a": 2.0}),
    ("beta", (2.0, 3.0, 1.0, 4.0), {}),
    ("lognorm", (0.5,), {"loc": 0.1}),
    ("expon", (), {}),
    ("poisson", (3.0,), {"loc": 1}),
    ("randint", (0, 5), {}),
    ("binom", (), {"n": 10, "p": 0.3}),
]


@pytest.mark.parametrize("name,args,kwargs", CASES)
def test_scipy_parse_args_private_and_fallback_agree(name, args, kwargs):
    dist = getattr(st, name)
    private = dist._parse_args(*args, **kwargs)
    assert compat_scipy.parse_args(dist, args, kwargs) == private
    assert compat_scipy.parse_args_public(dist, args, kwargs) == private


@pytest.mark.parametrize("name,args,kwargs", [("norm", (1, 2, 3), {}), ("gamma", (), {}),
                                              ("poisson", (1,), {"scale": 2}),
                                              ("beta", (1, 2), {"c": 1})])
def test_scipy_parse_args_bad_arguments_raise_type_error(name, args, kwargs):
    dist = getattr(st, name)
    for fn in (compat_scipy.parse_args, compat_scipy.parse_args_public):
        with pytest.raises(TypeError):
            fn(dist, args, kwargs)


def test_rv_uses_the_fast_path_through_the_door():
    rv = RV("gamma", 2.0, scale=3.0)
    assert rv._fast is not None
    draws = np.array([rv.draw(np.random.default_rng(s)) for s in range(2000)])
    assert abs(draws.mean() - 6.0) < 0.5


# --- scikit-learn: sklearn.linear_model._base.LinearClassifierMixin ----------------------


def test_sklearn_private_mixin_in_use_on_installed_version():
    from sklearn.linear_model._base import LinearClassifierMixin

    assert compat_sklearn.USES_PRIVATE
    assert compat_sklearn.LinearClassifierMixin is LinearClassifierMixin
    assert issubclass(SAGAClassifier, LinearClassifierMixin)


def _data(n_classes: int, sparse: bool, labels):
    rng = np.random.default_rng(n_classes)
    X = rng.normal(size=(120, 6))
    y = np.asarray(labels)[rng.integers(0, n_classes, size=120)]
    return (sp.csr_matrix(np.where(np.abs(X) > 0.7, X, 0.0)) if sparse else X), y


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("labels", [[0, 1], ["no", "yes"], [3, 5, 9], ["a", "b", "c", "d"]])
def test_sklearn_fallback_predicts_as_the_private_mixin(sparse, labels):
    X, y = _data(len(labels), sparse, labels)
    clf = SAGAClassifier(max_iter=50, tol=1e-6, random_state=0).fit(X, y)
    # the fallback's methods, run on the same fitted estimator
    scores = compat_sklearn.LinearClassifierFallback.decision_function(clf, X)
    np.testing.assert_array_equal(scores, clf.decision_function(X))
    assert scores.shape == ((120,) if len(labels) == 2 else (120, len(labels)))
    pred = compat_sklearn.LinearClassifierFallback.predict(clf, X)
    np.testing.assert_array_equal(pred, clf.predict(X))
    assert pred.dtype == clf.predict(X).dtype


class _FallbackLinear(compat_sklearn.LinearClassifierFallback, BaseEstimator):
    """A linear classifier on the fallback alone, as SAGAClassifier would be without the
    private mixin (the tests set the fitted attributes directly)."""

    def fit(self, X, y):
        raise NotImplementedError


class _PrivateLinear(compat_sklearn.LinearClassifierMixin, BaseEstimator):
    def fit(self, X, y):
        raise NotImplementedError


@pytest.mark.parametrize("k,classes", [(1, np.array(["neg", "pos"])), (3, np.arange(3))])
def test_sklearn_fallback_as_a_base_class(k, classes):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 4))
    fitted = dict(coef_=rng.normal(size=(k, 4)), intercept_=rng.normal(size=k),
                  classes_=classes, n_features_in_=4)
    fb, pv = _FallbackLinear(), _PrivateLinear()
    with pytest.raises(NotFittedError):
        fb.predict(X)
    for est in (fb, pv):
        for key, value in fitted.items():
            setattr(est, key, value)
    np.testing.assert_array_equal(fb.decision_function(X), pv.decision_function(X))
    np.testing.assert_array_equal(fb.predict(X), pv.predict(X))
    with pytest.raises(ValueError, match="features"):
        fb.predict(X[:, :3])


# --- dask.array: Array._meta ----------------------------------------------------------------


def _dask_arrays():
    rng = np.random.default_rng(2)
    A = rng.normal(size=(20, 5))
    S = sp.csr_matrix(np.where(np.abs(A) > 0.8, A, 0.0))
    return {
        "float32": da.from_array(A.astype(np.float32), chunks=(7, 5)),
        "int64": da.from_array(np.arange(100).reshape(20, 5), chunks=(7, 5)),
        "csr_matrix": da.from_array(S, chunks=(7, 5), asarray=False),
        "csr_array": da.from_array(sp.csr_array(S), chunks=(7, 5), asarray=False),
    }


@pytest.mark.parametrize("kind", ["float32", "int64", "csr_matrix", "csr_array"])
def test_dask_chunk_meta_public_private_and_inferred_agree(kind):
    from dabc.learn import _core

    X = _dask_arrays()[kind]
    public = dask_array.chunk_meta(X, dtype=np.float64)
    private = dask_array.chunk_meta_private(X, dtype=np.float64)
    assert type(public) is type(private) is type(X._meta)
    assert public.dtype == private.dtype == np.float64
    assert public.shape == private.shape and 0 in public.shape
    assert type(dask_array.chunk_meta(X)) is type(X._meta)
    assert dask_array.chunk_meta(X).dtype == X.dtype
    # the last fallback, meta=None: map_blocks infers the same chunk type
    inferred = X.map_blocks(_core.kernel_input, dtype=np.float64)._meta
    given = X.map_blocks(_core.kernel_input, dtype=np.float64, meta=public)._meta
    assert type(inferred) is type(given) is type(public)
    out = X.map_blocks(_core.kernel_input, dtype=np.float64, meta=public).compute(
        scheduler="sync")
    assert type(out) is type(public) and out.dtype == np.float64


def test_dask_chunk_meta_private_without_meta_is_none():
    assert dask_array.chunk_meta_private(np.zeros((2, 2))) is None


# --- concurrent.futures: Executor._max_workers ----------------------------------------------


def test_futures_executor_workers_on_real_executors():
    with ThreadPoolExecutor(max_workers=3) as ex:
        assert ex._max_workers == 3
        assert futures.executor_workers(ex) == 3
    with ProcessPoolExecutor(max_workers=2) as ex:
        assert futures.executor_workers(ex) == 2


def test_futures_executor_workers_fallback_is_cpu_count():
    class Plain(ThreadPoolExecutor):  # an executor that keeps no _max_workers
        def __init__(self):
            super().__init__(max_workers=1)
            del self._max_workers

    ex = Plain()
    try:
        assert futures.executor_workers(ex) == (os.cpu_count() or 1)
    finally:
        ex.shutdown()


# --- distributed: the Dask sampler's two private routes -----------------------------------
def test_distributed_scatter_and_cancellation_check_on_a_real_cluster():
    """``scatter_broadcast`` puts the data on every worker within its deadline, through the
    private ``Client._scatter`` on the installed version; ``cancellation_check`` is None off
    a worker and, inside a task, answers False while the task runs and True once the client
    cancelled it."""
    import time

    from distributed import Client, LocalCluster

    from dabc._compat import distributed as compat_distributed

    assert compat_distributed.cancellation_check() is None  # not on a worker
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        assert hasattr(client, "_scatter"), "the private route is gone: the fallback runs"
        fut = compat_distributed.scatter_broadcast(client, b"x" * 1000, timeout=10.0)
        assert len(client.who_has([fut])[fut.key]) == 2
        assert client.submit(len, fut).result() == 1000

        def watch(_):
            check = compat_distributed.cancellation_check()
            assert check is not None and check() is False
            deadline = time.monotonic() + 20
            while not check() and time.monotonic() < deadline:
                time.sleep(0.01)
            return check()

        def executing(dask_worker):
            return [ts.key for ts in dask_worker.state.tasks.values() if ts.state == "executing"]

        task = client.submit(watch, fut, pure=False)
        deadline = time.monotonic() + 20
        while not any(client.run(executing).values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [task.key] in client.run(executing).values()
        task.cancel()
        # the task's thread notices the cancellation and returns: nothing executes any more
        deadline = time.monotonic() + 10
        while any(client.run(executing).values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(client.run(executing).values())


def test_importing_the_slurm_cluster_keeps_the_sigint_handler():
    """dask-jobqueue's import replaces SIGINT's handler with one that exits; dabc's does not."""
    import subprocess
    import sys

    code = ("import signal, sys\n"
            "before = signal.getsignal(signal.SIGINT)\n"
            "import dabc.cluster.slurm\n"
            "assert 'dask_jobqueue.runner' in sys.modules\n"
            "assert signal.getsignal(signal.SIGINT) is before, signal.getsignal(signal.SIGINT)\n"
            "try:\n"
            "    signal.raise_signal(signal.SIGINT)\n"
            "except KeyboardInterrupt:\n"
            "    print('KeyboardInterrupt')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "KeyboardInterrupt"


def test_sqlite_engines_share_one_dialect_and_compile_a_statement_once(tmp_path):
    """Two runs in two SQLite files: the second compiles none of the statements the first
    compiled, and each file still holds only its own run."""
    import sqlalchemy as sa
    from sqlalchemy.sql import elements

    import dabc
    from dabc.storage import History

    def run(name):
        abc = dabc.ABCSMC(lambda p, rng: {"y": p["x"] + rng.normal()},
                          dabc.Prior(x=dabc.RV("norm", 0, 1)), population_size=50, seed=3,
                          sampler=dabc.SingleCoreSampler(), progress=False)
        return abc.run({"y": 0.5}, db=f"sqlite:///{tmp_path / name}", max_generations=2)

    compiled = []
    original = elements.ClauseElement._compiler

    def counting(self, *a, **k):
        compiled.append(type(self).__name__)
        return original(self, *a, **k)

    first = run("a.db")
    elements.ClauseElement._compiler = counting
    try:
        second = run("b.db")
    finally:
        elements.ClauseElement._compiler = original
    assert compiled == []
    assert first.engine.dialect is second.engine.dialect
    for name, h in (("a.db", first), ("b.db", second)):
        assert len(History(f"sqlite:///{tmp_path / name}").all_runs()) == 1
        with h.engine.connect() as c:
            assert c.execute(sa.text("SELECT count(*) FROM dabc_runs")).scalar() == 1
    np.testing.assert_array_equal(first.get_distribution(t=1)[1], second.get_distribution(t=1)[1])


# -- numpy_random: block streams re-keyed instead of built ------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2**32 - 1, 2**32, 2**64 + 5, 2**130 + 3])
def test_block_streams_are_numpys_seed_sequence_streams(seed):
    from dabc._compat.numpy_random import BlockStreams, numpy_stream
    for t, kind in [(0, 2), (7, 2), (1000, 3)]:
        streams = BlockStreams(seed, t, kind)
        for b in (0, 1, 2, 255, 2**20, 2**32 - 1, 2**32):  # 2**32: numpy's own path
            got = streams.at(b).standard_normal(5)
            want = numpy_stream(seed, t, kind, b).standard_normal(5)
            np.testing.assert_array_equal(got, want)


def test_block_streams_fall_back_to_numpy_when_the_check_fails(monkeypatch):
    from dabc._compat import numpy_random
    monkeypatch.setattr(numpy_random, "_verified", None)
    monkeypatch.setattr(numpy_random.BlockStreams, "_state",
                        lambda self, b: {"state": {"state": 0}})  # a numpy that seeds otherwise
    streams = numpy_random.BlockStreams(5, 1, 2)
    first = streams.at(0)
    assert numpy_random._verified is False and not streams._fast
    later = numpy_random.BlockStreams(5, 1, 2)
    assert not later._fast  # every later stream is numpy's own
    np.testing.assert_array_equal(later.at(3).random(4),
                                  numpy_random.numpy_stream(5, 1, 2, 3).random(4))
    assert first is not later.at(4)


def test_each_thread_gets_its_own_block_generator():
    from dabc._compat.numpy_random import BlockStreams, numpy_stream

    def draws(b):
        streams = BlockStreams(9, 2, 2)
        return [streams.at(b + k).random(1000).sum() for k in range(20)]

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(draws, range(0, 400, 20)))
    want = [[numpy_stream(9, 2, 2, b + k).random(1000).sum() for k in range(20)]
            for b in range(0, 400, 20)]
    assert got == want
