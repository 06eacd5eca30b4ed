"""dabc.learn: SAGA estimators on numpy, scipy.sparse and Dask arrays (real LocalCluster).

Checked: scikit-learn's ``check_estimator`` for both estimators (every check run, the array-API
one in a subprocess with ``SCIPY_ARRAY_API=1`` since it needs that set before scipy is
imported); final objectives within 1e-6 relative of scikit-learn's optimum of the same problem
(numpy, CSR, Dask in this process and on a two-process cluster, two seeds each); multi-output
regression; ``partial_fit``; pickling; clear errors for bad input; that on the cluster every
chunk task runs beside its chunk (so the gradient memory never moves) and gives bit-identical
weights to the in-process run; and that a worker compiles or loads each numba kernel once and
never again, however many tasks and fits follow.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import warnings

import cloudpickle
import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp
from distributed import Client, LocalCluster, get_task_stream
from scipy.special import logsumexp
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import ElasticNet, Lasso, LogisticRegression, Ridge
from sklearn.utils.estimator_checks import parametrize_with_checks

from dabc.learn import SAGAClassifier, SAGARegressor, compile_counts

TIGHT = dict(tol=1e-10, max_iter=100_000)


# --- scikit-learn's estimator checks ------------------------------------------------------
@parametrize_with_checks([SAGARegressor(), SAGAClassifier()])
def test_sklearn_check_estimator(estimator, check):
    """Every check of ``check_estimator``; the array-API one skips here (see next test)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def test_sklearn_array_api_check_in_subprocess():
    """``check_array_api_input`` (numpy namespace) needs ``SCIPY_ARRAY_API=1`` before scipy is
    imported, so it runs in a fresh interpreter; it must pass, not skip."""
    code = (
        "import warnings\n"
        "from sklearn.utils.estimator_checks import check_estimator\n"
        "from dabc.learn import SAGAClassifier, SAGARegressor\n"
        "for est in (SAGARegressor(), SAGAClassifier()):\n"
        "    res = [r for r in check_estimator(est, on_fail=None)\n"
        "           if r['check_name'] == 'check_array_api_input']\n"
        "    assert res and all(r['status'] == 'passed' for r in res), res\n"
        "print('ok')\n")
    env = {**os.environ, "SCIPY_ARRAY_API": "1", "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=240)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


# --- problems and independent objectives --------------------------------------------------
def _regression(seed: int, n: int = 240, p: int = 12, k: int = 1, sparse: bool = False):
    rng = np.random.default_rng(seed)
    if sparse:
        X = sp.random(n, 3 * p, density=0.15, random_state=seed, format="csr") * 3.0
    else:
        X = rng.standard_normal((n, p)) * rng.uniform(0.5, 2.0, p)
    W = rng.standard_normal((X.shape[1], k))
    y = np.asarray(X @ W) + 0.5 * rng.standard_normal((n, k)) + 1.5
    return X, (y[:, 0] if k == 1 else y)


def _classification(seed: int, n_classes: int, n: int = 240, p: int = 10, sparse=False):
    rng = np.random.default_rng(seed)
    if sparse:
        X = sp.random(n, 3 * p, density=0.15, random_state=seed, format="csr") * 3.0
    else:
        X = rng.standard_normal((n, p))
    scores = np.asarray(X @ rng.standard_normal((X.shape[1], n_classes)))
    scores += 1.5 * rng.gumbel(size=scores.shape)
    return X, np.array(list("abcdefg"))[scores.argmax(axis=1)]


def _dense(X):
    return X.toarray() if sp.issparse(X) else X


def squared_objective(X, y, coef, intercept, alpha, l1_ratio) -> float:
    """``(1/2n)|y - X w - b|^2 + alpha (l1_ratio |w|_1 + (1 - l1_ratio)/2 |w|^2)``."""
    W = np.atleast_2d(coef)
    Y = y.reshape(len(y), -1)
    R = _dense(X) @ W.T + intercept - Y
    return (0.5 * np.sum(R**2) / len(y) + alpha * l1_ratio * np.abs(W).sum()
            + 0.5 * alpha * (1 - l1_ratio) * np.sum(W**2))


def logistic_objective(X, y, classes, coef, intercept, alpha, l1_ratio) -> float:
    """Mean binary or multinomial log loss plus the same penalty."""
    Z = _dense(X) @ np.atleast_2d(coef).T + intercept
    idx = np.searchsorted(classes, y)
    if Z.shape[1] == 1:
        s = np.where(idx == 1, 1.0, -1.0)
        data = np.logaddexp(0.0, -s * Z[:, 0]).mean()
    else:
        data = np.mean(logsumexp(Z, axis=1) - Z[np.arange(len(y)), idx])
    return (data + alpha * l1_ratio * np.abs(coef).sum()
            + 0.5 * alpha * (1 - l1_ratio) * np.sum(np.asarray(coef) ** 2))


def _rel_gap(ours: float, reference: float) -> float:
    return (ours - reference) / abs(reference)


def _as_dask(X, chunks: int = 80):
    if sp.issparse(X):
        return da.from_array(X, chunks=(chunks, X.shape[1]), asarray=False)
    return da.from_array(X, chunks=(chunks, X.shape[1]))


REG_CASES = [("l2", 0.0), ("l1", 1.0), ("elasticnet", 0.5)]


def _sklearn_regression(X, y, alpha, penalty, l1_ratio):
    n = X.shape[0]
    if penalty == "l2":  # Ridge: |y - Xw|^2 + A |w|^2 = 2n * ours with alpha = A / n
        ref = Ridge(alpha=alpha * n, tol=1e-12).fit(X, y)
    elif penalty == "l1":
        ref = Lasso(alpha=alpha, tol=1e-14, max_iter=1_000_000).fit(X, y)
    else:
        ref = ElasticNet(alpha=alpha, l1_ratio=l1_ratio, tol=1e-14, max_iter=1_000_000).fit(X, y)
    return squared_objective(X, y, ref.coef_, ref.intercept_, alpha, l1_ratio)


def _sklearn_logistic(X, y, alpha, penalty, l1_ratio):
    C = 1.0 / (alpha * X.shape[0])
    if penalty == "l2":
        ref = LogisticRegression(C=C, solver="lbfgs", tol=1e-12, max_iter=100_000)
    else:
        ref = LogisticRegression(C=C, solver="saga", l1_ratio=l1_ratio, tol=1e-10,
                                 max_iter=100_000)
    ref.fit(X, y)
    return logistic_objective(X, y, ref.classes_, ref.coef_, ref.intercept_, alpha, l1_ratio)


# --- accuracy against scikit-learn ----------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kind", ["numpy", "csr", "dask", "dask-csr"])
@pytest.mark.parametrize("penalty,l1_ratio", REG_CASES)
def test_regressor_reaches_sklearn_optimum(seed, kind, penalty, l1_ratio):
    X, y = _regression(seed, sparse="csr" in kind)
    alpha = 0.02
    ref = _sklearn_regression(X, y, alpha, penalty, l1_ratio)
    Xin = _as_dask(X) if kind.startswith("dask") else X
    est = SAGARegressor(alpha=alpha, penalty=penalty, l1_ratio=l1_ratio, random_state=seed,
                        **TIGHT).fit(Xin, y)
    ours = squared_objective(X, y, est.coef_, est.intercept_, alpha, l1_ratio)
    assert _rel_gap(ours, ref) < 1e-6
    assert est.objective(X, y) == pytest.approx(ours, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kind", ["numpy", "csr", "dask", "dask-csr"])
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("penalty,l1_ratio", [("l2", 0.0), ("elasticnet", 0.5)])
def test_classifier_reaches_sklearn_optimum(seed, kind, n_classes, penalty, l1_ratio):
    X, y = _classification(seed, n_classes, sparse="csr" in kind)
    alpha = 0.01
    ref = _sklearn_logistic(X, y, alpha, penalty, l1_ratio)
    Xin = _as_dask(X) if kind.startswith("dask") else X
    est = SAGAClassifier(alpha=alpha, penalty=penalty, l1_ratio=l1_ratio, random_state=seed,
                         **TIGHT).fit(Xin, y)
    assert est.coef_.shape == ((1 if n_classes == 2 else n_classes), X.shape[1])
    ours = logistic_objective(X, y, est.classes_, est.coef_, est.intercept_, alpha, l1_ratio)
    assert _rel_gap(ours, ref) < 1e-6
    assert est.objective(X, y) == pytest.approx(ours, rel=1e-10)


def test_l1_classifier_reaches_sklearn_optimum():
    X, y = _classification(3, 3)
    ref = _sklearn_logistic(X, y, 0.02, "l1", 1.0)
    est = SAGAClassifier(alpha=0.02, penalty="l1", random_state=0, **TIGHT).fit(X, y)
    ours = logistic_objective(X, y, est.classes_, est.coef_, est.intercept_, 0.02, 1.0)
    assert _rel_gap(ours, ref) < 1e-6
    assert (est.coef_ == 0).any()  # the proximal step gives exact zeros


def test_multi_output_matches_separate_fits_and_ridge():
    X, Y = _regression(4, k=3)
    multi = SAGARegressor(alpha=0.01, random_state=0, **TIGHT).fit(X, Y)
    assert multi.coef_.shape == (3, X.shape[1]) and multi.intercept_.shape == (3,)
    assert multi.predict(X).shape == (len(X), 3)
    ridge = Ridge(alpha=0.01 * len(X), tol=1e-12).fit(X, Y)
    np.testing.assert_allclose(multi.coef_, ridge.coef_, atol=1e-6)
    np.testing.assert_allclose(multi.intercept_, ridge.intercept_, atol=1e-6)
    single = SAGARegressor(alpha=0.01, random_state=0, **TIGHT).fit(X, Y[:, 1])
    assert single.coef_.shape == (X.shape[1],) and isinstance(single.intercept_, float)
    np.testing.assert_allclose(single.coef_, multi.coef_[1], atol=1e-6)
    column = SAGARegressor(alpha=0.01, random_state=0, **TIGHT).fit(X, Y[:, 1:2])
    assert column.coef_.shape == (1, X.shape[1]) and column.predict(X).shape == (len(X), 1)


def test_partial_fit_converges_and_counts_epochs():
    X, y = _regression(5)
    full = SAGARegressor(alpha=0.02, random_state=0, **TIGHT).fit(X, y)
    part = SAGARegressor(alpha=0.02, random_state=0)
    for _ in range(60):
        part.partial_fit(X, y)
    assert part.n_iter_ == 60
    assert _rel_gap(part.objective(X, y), full.objective(X, y)) < 1e-9
    Xc, yc = _classification(5, 3)
    clf = SAGAClassifier(alpha=0.02)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(Xc, yc)
    clf.partial_fit(Xc[:100], yc[:100], classes=np.unique(yc))
    clf.partial_fit(Xc[100:], yc[100:])
    assert clf.coef_.shape == (3, Xc.shape[1])
    with pytest.raises(ValueError, match="not in classes"):
        clf.partial_fit(Xc[:5], np.array(["z"] * 5))


def test_pickles_and_predicts_identically():
    X, Y = _regression(6, k=2)
    est = SAGARegressor(random_state=0).fit(X, Y)
    for dumps in (pickle.dumps, cloudpickle.dumps):
        back = pickle.loads(dumps(est))
        np.testing.assert_array_equal(back.predict(X), est.predict(X))
    Xc, yc = _classification(6, 3)
    clf = SAGAClassifier(random_state=0).fit(Xc, yc)
    back = pickle.loads(cloudpickle.dumps(clf))
    np.testing.assert_array_equal(back.predict_proba(Xc), clf.predict_proba(Xc))
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(Xc)), clf.predict_proba(Xc))


def test_same_seed_same_weights_and_dask_single_chunk_equals_numpy():
    X, y = _regression(7)
    a = SAGARegressor(random_state=3, tol=1e-6).fit(X, y)
    b = SAGARegressor(random_state=3, tol=1e-6).fit(X, y)
    c = SAGARegressor(random_state=3, tol=1e-6).fit(da.from_array(X, chunks=X.shape), y)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.coef_, c.coef_)
    assert a.n_iter_ == c.n_iter_


# --- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("params,match", [
    ({"penalty": "l3"}, "penalty must be one of"),
    ({"alpha": -1.0}, "alpha must be"),
    ({"alpha": np.nan}, "alpha must be"),
    ({"l1_ratio": 1.5}, "l1_ratio must be"),
    ({"max_iter": 0}, "max_iter must be"),
    ({"tol": -1.0}, "tol must be"),
    ({"fit_intercept": "yes"}, "fit_intercept must be"),
])
def test_bad_parameters_raise_in_fit(params, match):
    X, y = _regression(8)
    est = SAGARegressor(**params)  # no validation in __init__
    with pytest.raises(ValueError, match=match):
        est.fit(X, y)


def test_bad_data_raises_clearly():
    X, y = _regression(9)
    Xnan = X.copy()
    Xnan[3, 2] = np.nan
    for Xbad in (Xnan, sp.csr_matrix(Xnan)):
        with pytest.raises(ValueError, match="NaN"):
            SAGARegressor().fit(Xbad, y)
    with pytest.raises(ValueError, match="NaN or infinity"):
        SAGARegressor().fit(da.from_array(Xnan, chunks=(60, X.shape[1])), y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        SAGARegressor().fit(X, y[:-1])
    with pytest.raises(ValueError, match="to match X"):
        SAGARegressor().fit(da.from_array(X, chunks=60), y[:-1])
    with pytest.raises(ValueError, match="2-D"):
        SAGARegressor().fit(da.zeros((4, 3, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="at least 2 classes"):
        SAGAClassifier().fit(X, np.zeros(len(X)))
    fitted = SAGARegressor().fit(X, y)
    with pytest.raises(ValueError, match="features"):
        fitted.predict(X[:, :-1])
    with pytest.raises(ValueError, match="features"):
        fitted.partial_fit(da.from_array(X[:, :-1], chunks=60), y)
    with pytest.raises(ValueError, match="outputs|shape"):
        fitted.partial_fit(X, np.column_stack([y, y]))


# --- Dask on a real cluster -------------------------------------------------------------------
@pytest.fixture(scope="module")
def client():
    """Two worker processes, one thread each, on 127.0.0.1 only."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None,
                      scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as cluster, \
            Client(cluster) as c:
        yield c


def test_cluster_fit_equals_in_process_fit_and_sklearn(client):
    """Same pure tasks, same seeds: the cluster's weights are bit-identical to the in-process
    run's (dense and CSR chunks, both estimators); fitted to tolerance on the cluster, the
    objectives are within 1e-6 of scikit-learn's optimum."""
    for seed in (0, 1):
        X, y = _regression(seed, sparse=seed == 1)
        Xc, yc = _classification(seed, 3, sparse=seed == 1)
        for est, Xi, yi in ((SAGARegressor(alpha=0.02), X, y), (SAGAClassifier(alpha=0.01), Xc,
                                                                  yc)):
            est.set_params(random_state=seed, max_iter=8, tol=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                on_cluster = clone(est).fit(_as_dask(Xi), yi)
                with _in_process():
                    local = clone(est).fit(_as_dask(Xi), yi)
            np.testing.assert_array_equal(on_cluster.coef_, local.coef_)
            np.testing.assert_array_equal(on_cluster.intercept_, local.intercept_)
        reg = SAGARegressor(alpha=0.02, random_state=seed, tol=1e-8,
                            max_iter=10_000).fit(_as_dask(X, chunks=120), y)
        ref = _sklearn_regression(X, y, 0.02, "l2", 0.0)
        ours = squared_objective(X, y, reg.coef_, reg.intercept_, 0.02, 0.0)
        assert _rel_gap(ours, ref) < 1e-6
        clf = SAGAClassifier(alpha=0.01, random_state=seed, tol=1e-8,
                             max_iter=10_000).fit(_as_dask(Xc, chunks=120), yc)
        ref = _sklearn_logistic(Xc, yc, 0.01, "l2", 0.0)
        ours = logistic_objective(Xc, yc, clf.classes_, clf.coef_, clf.intercept_, 0.01, 0.0)
        assert _rel_gap(ours, ref) < 1e-6
        np.testing.assert_array_equal(clf.predict(_as_dask(Xc)).compute(), clf.predict(Xc))


class _in_process:
    """Route Dask fits to the in-process path (as if no client existed) for a reference run;
    only the choice of executor changes, the tasks are the same functions."""

    def __enter__(self):
        import dabc.learn.dask as mod

        self._mod, self._orig = mod, mod._client
        mod._client = lambda: None

    def __exit__(self, *exc):
        self._mod._client = self._orig


def test_chunk_tasks_run_beside_their_chunks(client):
    """Every epoch task of chunk c, and the extraction of the state from its output, runs on
    the worker that holds chunk c: the output holding the gradient memory never leaves it."""
    X, y = _regression(10, n=400)
    Xd = client.persist(_as_dask(X, chunks=100))
    from distributed import futures_of, wait

    wait(futures_of(Xd))
    holder = {key[1]: next(iter(ws)) for key, ws in client.who_has(futures_of(Xd)).items()}
    assert len(set(holder.values())) == 2  # the chunks are spread over both workers
    with get_task_stream(client) as ts, warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = SAGARegressor(alpha=0.02, random_state=0, max_iter=5, tol=0).fit(Xd, y)
    assert est.n_iter_ == 5
    seen = 0
    for rec in ts.data:
        key = rec["key"]
        name = key if isinstance(key, str) else str(key)
        for prefix in ("saga-epoch-", "saga-state-"):
            if name.startswith(prefix):
                chunk = int(name[len(prefix):].split("-")[1])
                assert rec["worker"] == holder[chunk], name
                seen += 1
    assert seen >= 5 * 4 * 2  # epochs x chunks x (epoch task, state extraction)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_numba_compiles_once_per_worker(client):
    """After the first dense and the first CSR chunk task on each worker, further fits (many
    tasks, new data, both estimators, partial_fit) compile or load nothing."""
    Xw, yw = _regression(11, n=200)
    Xs, ys = _regression(11, n=200, sparse=True)
    for X in (Xw, Xs):  # first chunk tasks on both workers (4 chunks spread over 2)
        SAGARegressor(max_iter=1, tol=0).fit(_as_dask(X, chunks=50),
                                             ys if sp.issparse(X) else yw)
    first = client.run(compile_counts)
    assert len(first) == 2
    for counts in first.values():
        assert counts["signatures"] >= 2  # the dense and the CSR epoch kernels
        # each kernel signature was compiled or loaded from the disk cache exactly once
        assert counts["compiled"] + counts["cache_loads"] >= counts["signatures"]
    for seed in range(2):
        X, y = _regression(20 + seed, n=300, sparse=seed == 1)
        SAGARegressor(random_state=seed, max_iter=5).fit(_as_dask(X, chunks=60), y)
        Xc, yc = _classification(seed, 2 + seed, sparse=seed == 1)
        clf = SAGAClassifier(random_state=seed, max_iter=5).fit(_as_dask(Xc, chunks=60), yc)
        clf.partial_fit(_as_dask(Xc, chunks=60), yc)
    after = client.run(compile_counts)
    assert after == first
