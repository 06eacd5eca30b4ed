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
from sklearn.exceptions import ConvergenceWarning, DataConversionWarning
from sklearn.linear_model import ElasticNet, Lasso, LogisticRegression, Ridge
from sklearn.utils.estimator_checks import parametrize_with_checks

from dabc.learn import SAGAClassifier, SAGARegressor, compile_counts
from dabc.learn.kernels import KERNELS

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
    """Relative distance of two objective values, in either direction (a fit can be below a
    reference that is itself not exactly at the optimum, but not by much)."""
    return abs(ours - reference) / abs(reference)


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


def _intercept_dominated(seed: int, scale: float = 1.0):
    """y = 1e4 + X w + noise, dense 500 x 5: the intercept dwarfs the weights."""
    rng = np.random.default_rng(seed)
    X = scale * rng.standard_normal((500, 5))
    y = 1e4 + X @ np.array([1.0, 0.5, -0.3, 0.2, 0.1]) + 0.1 * rng.standard_normal(500)
    return X, y


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kind", ["numpy", "csr", "dask", "dask-csr"])
def test_large_intercept_does_not_stop_the_weights_early(seed, kind):
    """Default parameters (tol=1e-4): the weights are judged on their own scale, as in
    scikit-learn, not against a large intercept, so the fit reaches Ridge's optimum."""
    X, y = _intercept_dominated(seed)
    Xin = sp.csr_matrix(X) if "csr" in kind else X
    Xin = _as_dask(Xin, chunks=125) if kind.startswith("dask") else Xin
    est = SAGARegressor(random_state=seed).fit(Xin, y)
    ref = Ridge(alpha=1e-4 * len(X), tol=1e-12).fit(X, y)
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=0, atol=2e-3)
    assert abs(est.intercept_ - ref.intercept_) < 2e-3
    ref_obj = squared_objective(X, y, ref.coef_, ref.intercept_, 1e-4, 0.0)
    assert _rel_gap(est.objective(X, y), ref_obj) < 1e-3


@pytest.mark.parametrize("kind", ["numpy", "csr", "dask"])
def test_all_zero_weights_do_not_stop_a_moving_intercept(kind):
    """Strong L1 keeps every weight at exactly 0 from the first epoch on; the run must still
    go on until the intercept has converged (to mean(y), the optimum when W = 0)."""
    X, y = _intercept_dominated(0, scale=3.0)  # larger rows: small step, slow intercept
    Xin = sp.csr_matrix(X) if kind == "csr" else X
    Xin = _as_dask(Xin, chunks=125) if kind == "dask" else Xin
    for tol, rel in ((1e-4, 5e-4), (1e-8, 5e-8)):  # W is 0 from epoch 8 on, b off by 21
        est = SAGARegressor(alpha=100.0, penalty="l1", random_state=0, tol=tol).fit(Xin, y)
        assert not est.coef_.any()
        assert est.intercept_ == pytest.approx(y.mean(), rel=rel)


@pytest.mark.parametrize("penalty", ["l2", "l1", "elasticnet"])
def test_empty_column_gets_its_penalty_on_csr(penalty):
    """A feature that is zero in every row only feels the penalty. Warm-started from a nonzero
    coefficient, partial_fit on CSR (in memory and on Dask chunks) shrinks it exactly as the
    dense kernel does (the n-fold prox), and L1 takes it to exactly 0 (its optimum)."""
    X, y = _regression(12, n=200, p=6)
    warm = SAGARegressor(alpha=0.05, penalty=penalty, l1_ratio=0.5, random_state=0).fit(X, y)
    assert abs(warm.coef_[0]) > 0.1
    X0 = X.copy()
    X0[:, 0] = 0.0
    inputs = {"numpy": X0, "csr": sp.csr_matrix(X0),
              "dask-csr": _as_dask(sp.csr_matrix(X0), chunks=70)}
    first, last = {}, {}
    for kind, Xin in inputs.items():
        est = pickle.loads(pickle.dumps(warm))
        est.partial_fit(Xin, y)
        first[kind] = est.coef_[0]
        for _ in range(39):
            est.partial_fit(Xin, y)
        last[kind] = est.coef_[0]
    assert first["numpy"] != warm.coef_[0]
    for kind in ("csr", "dask-csr"):
        assert first[kind] == pytest.approx(first["numpy"], rel=1e-10), kind
        assert last[kind] == pytest.approx(last["numpy"], rel=1e-9, abs=1e-300), kind
    if penalty == "l1":
        assert last == {"numpy": 0.0, "csr": 0.0, "dask-csr": 0.0}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_each_kernel_keeps_one_signature_in_this_process(tmp_path):
    """Whatever the input (read-only, memory-mapped, Fortran-ordered, float32, int64-index or
    read-only CSR, csr_array, CSC, read-only y), through fit and partial_fit (multinomial too),
    in memory and on Dask, each kernel is used with one signature: compiled once per process."""
    X, y = _regression(13, n=60, p=4)
    Xc, yc = _classification(13, 3, n=60, p=4)
    yb = np.where(yc == yc[0], 1, 0)
    ro = X.copy()
    ro.setflags(write=False)
    yro = y.copy()
    yro.setflags(write=False)
    np.save(tmp_path / "x.npy", X)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    S = sp.csr_matrix(X)
    S64 = S.copy()
    S64.indices, S64.indptr = S64.indices.astype(np.int64), S64.indptr.astype(np.int64)
    Sro = S.copy()
    for a in (Sro.data, Sro.indices, Sro.indptr):
        a.setflags(write=False)
    inputs = [X, ro, mm, np.asfortranarray(X), X.astype(np.float32), S, S64, Sro,
              sp.csr_array(X), sp.csc_matrix(X)]
    for Xi in inputs:
        for Xin in (Xi, _as_dask(Xi, chunks=25)):
            for target in (y, yro):
                reg = SAGARegressor(max_iter=2, random_state=0).fit(Xin, target)
                reg.partial_fit(Xin, target)
            for labels in (yc, yb):
                clf = SAGAClassifier(max_iter=2, random_state=0).fit(Xin, labels)
                clf.partial_fit(Xin, labels)
                SAGAClassifier(random_state=0).partial_fit(Xin, labels, classes=np.unique(labels))
    for name in ("saga_epoch_dense", "saga_epoch_csr"):
        assert len(KERNELS[name].signatures) == 1, (name, KERNELS[name].signatures)
    assert len(KERNELS["_loss_grad"].signatures) <= 1
    for name, counts in compile_counts()["per_kernel"].items():
        assert counts["compiled"] + counts["cache_loads"] == counts["signatures"], name


def test_compile_counts_ignore_other_numba_functions():
    """``compiled`` counts the dabc kernels only, not a user's own numba functions."""
    import numba

    before = compile_counts()

    @numba.njit
    def user_function(x):
        return x + 1

    assert user_function(1) == 2 and user_function(1.5) == 2.5
    assert compile_counts() == before


@pytest.mark.parametrize("n_classes", [2, 3])
def test_classifier_partial_fit_reaches_optimum(n_classes):
    """Repeated partial_fit (one epoch each, memory at the current weights) reaches
    scikit-learn's optimum on numpy, CSR and Dask; one Dask chunk is bit-identical to numpy."""
    X, y = _classification(14, n_classes)
    alpha = 0.01
    ref = _sklearn_logistic(X, y, alpha, "l2", 0.0)
    classes = np.unique(y)
    fitted = {}
    for kind, Xin in (("numpy", X), ("csr", sp.csr_matrix(X)), ("dask", _as_dask(X, chunks=70)),
                      ("dask-one-chunk", da.from_array(X, chunks=X.shape))):
        clf = SAGAClassifier(alpha=alpha, random_state=0)
        for _ in range(60):
            clf.partial_fit(Xin, y, classes=classes)
        assert clf.n_iter_ == 60
        ours = logistic_objective(X, y, clf.classes_, clf.coef_, clf.intercept_, alpha, 0.0)
        assert _rel_gap(ours, ref) < 1e-6, kind
        fitted[kind] = clf
    np.testing.assert_array_equal(fitted["dask-one-chunk"].coef_, fitted["numpy"].coef_)
    np.testing.assert_array_equal(fitted["dask-one-chunk"].intercept_, fitted["numpy"].intercept_)


def test_regressor_dask_partial_fit_reaches_optimum():
    X, y = _regression(15)
    ref = _sklearn_regression(X, y, 0.02, "l2", 0.0)
    for Xin in (_as_dask(X, chunks=70), _as_dask(sp.csr_matrix(X), chunks=70)):
        est = SAGARegressor(alpha=0.02, random_state=0)
        for _ in range(60):
            est.partial_fit(Xin, y)
        ours = squared_objective(X, y, est.coef_, est.intercept_, 0.02, 0.0)
        assert _rel_gap(ours, ref) < 1e-6


UNEVEN = (0, 1, 97, 0, 61, 1, 80)  # 240 rows: empty, single-row and uneven chunks


@pytest.mark.parametrize("sparse", [False, True])
def test_dask_uneven_chunks_and_dask_y(sparse):
    """Row chunks of 0, 1 and uneven sizes, and y as a Dask array chunked differently from X:
    both estimators reach scikit-learn's optimum (fit), and partial_fit runs on them."""
    X, y = _regression(16, sparse=sparse)
    Xd = _as_dask(X).rechunk((UNEVEN, X.shape[1]))
    est = SAGARegressor(alpha=0.02, random_state=0, **TIGHT).fit(Xd, da.from_array(y, chunks=50))
    ours = squared_objective(X, y, est.coef_, est.intercept_, 0.02, 0.0)
    assert _rel_gap(ours, _sklearn_regression(X, y, 0.02, "l2", 0.0)) < 1e-6
    est.partial_fit(Xd, da.from_array(y, chunks=33))
    assert est.n_iter_ > 1
    Xc, yc = _classification(16, 3, sparse=sparse)
    Xcd = _as_dask(Xc).rechunk((UNEVEN, Xc.shape[1]))
    clf = SAGAClassifier(alpha=0.01, random_state=0, **TIGHT).fit(Xcd, da.from_array(yc, 50))
    ours = logistic_objective(Xc, yc, clf.classes_, clf.coef_, clf.intercept_, 0.01, 0.0)
    assert _rel_gap(ours, _sklearn_logistic(Xc, yc, 0.01, "l2", 0.0)) < 1e-6
    np.testing.assert_array_equal(clf.predict(Xcd).compute(), clf.predict(Xc))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_column_y_for_dask_classifier_warns_like_sklearn():
    """A (n, 1) y for a classifier is flattened with scikit-learn's DataConversionWarning, on
    Dask input as on numpy input."""
    Xc, yc = _classification(17, 2)
    for Xin in (Xc, _as_dask(Xc)):
        with pytest.warns(DataConversionWarning, match="column-vector y"):
            SAGAClassifier(max_iter=3).fit(Xin, yc.reshape(-1, 1))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_labels_of_another_type_raise_value_error():
    """Labels that do not even compare with ``classes_`` (object strings vs integers) give the
    same clear ValueError as unknown labels, in partial_fit and objective."""
    Xc, yc = _classification(18, 2)
    codes = np.searchsorted(np.unique(yc), yc)
    clf = SAGAClassifier(max_iter=3).fit(Xc, codes)
    with pytest.raises(ValueError, match="not in classes"):
        clf.partial_fit(Xc, yc.astype(object))
    with pytest.raises(ValueError, match="not in classes"):
        clf.objective(Xc, yc.astype(object))
    clf = SAGAClassifier(max_iter=3).fit(Xc, yc.astype(object))
    with pytest.raises(ValueError, match="not in classes"):
        clf.partial_fit(Xc, codes)


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


def _pinned(client, X, chunks: int):
    """A Dask array of ``X`` whose row chunks live alternately on the two workers (each block
    persisted with ``workers=``), so that both workers run chunk tasks of this array."""
    addrs = sorted(client.scheduler_info()["workers"])
    Xd = _as_dask(X, chunks=chunks)
    blocks = [client.persist(Xd.blocks[i], workers=[addrs[i % 2]])
              for i in range(Xd.numblocks[0])]
    return da.concatenate(blocks, axis=0)


EPOCH_KERNELS = ("saga_epoch_dense", "saga_epoch_csr")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_numba_compiles_once_per_worker(client):
    """Dense and CSR chunks are pinned to both workers, so each worker runs both epoch kernels:
    each then holds exactly one signature of each, obtained by exactly one compilation or
    disk-cache load; further fits (many tasks, new data, both estimators, partial_fit) compile
    or load nothing, on the workers and in this driver process."""
    Xw, yw = _regression(11, n=200)
    Xs, ys = _regression(11, n=200, sparse=True)
    SAGARegressor(max_iter=1, tol=0).fit(Xw, yw)  # the driver's own in-memory fits
    SAGARegressor(max_iter=1, tol=0).fit(Xs, ys)
    driver = compile_counts()
    for name in EPOCH_KERNELS:
        k = driver["per_kernel"][name]
        assert k["signatures"] == 1 and k["compiled"] + k["cache_loads"] == 1, (name, k)
    with get_task_stream(client) as ts:
        for X, y in ((Xw, yw), (Xs, ys)):
            SAGARegressor(max_iter=1, tol=0).fit(_pinned(client, X, 50), y)
    ran_on = {rec["worker"] for rec in ts.data if str(rec["key"]).startswith("saga-epoch-")}
    assert len(ran_on) == 2
    first = client.run(compile_counts)
    assert len(first) == 2
    for counts in first.values():
        for name in EPOCH_KERNELS:
            k = counts["per_kernel"][name]
            assert k["signatures"] == 1 and k["compiled"] + k["cache_loads"] == 1, (name, k)
        lg = counts["per_kernel"]["_loss_grad"]  # compiled with a kernel, or linked into it
        assert lg["signatures"] == lg["compiled"] + lg["cache_loads"] <= 1
    for seed in range(2):
        X, y = _regression(20 + seed, n=300, sparse=seed == 1)
        SAGARegressor(random_state=seed, max_iter=5).fit(_pinned(client, X, 60), y)
        Xc, yc = _classification(seed, 2 + seed, sparse=seed == 1)
        clf = SAGAClassifier(random_state=seed, max_iter=5).fit(_pinned(client, Xc, 60), yc)
        clf.partial_fit(_as_dask(Xc, chunks=60), yc)
    assert client.run(compile_counts) == first
    assert compile_counts() == driver


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_cluster_uneven_chunks_dask_y_and_recomputable_inputs(client):
    """On the cluster: row chunks of 0, 1 and uneven sizes and a Dask y give the in-process
    weights bit for bit (fit and partial_fit); the targets of each chunk and the initial state
    are tasks (the scheduler holds their inputs and can recompute them if a worker is lost),
    not scattered data."""
    X, y = _regression(19, sparse=True)
    Xd = _as_dask(X).rechunk((UNEVEN, X.shape[1]))
    yd = da.from_array(y, chunks=50)
    est = SAGARegressor(alpha=0.02, random_state=0, max_iter=6, tol=0)
    with get_task_stream(client) as ts:
        on_cluster = clone(est).fit(Xd, yd)
    with _in_process():
        local = clone(est).fit(Xd, yd)
    np.testing.assert_array_equal(on_cluster.coef_, local.coef_)
    assert on_cluster.intercept_ == local.intercept_
    names = [str(rec["key"]) for rec in ts.data]
    assert sum(n.startswith("saga-y-") for n in names) == len(UNEVEN)
    assert sum(n.startswith("saga-init-state-") for n in names) == 1
    on_cluster.partial_fit(Xd, yd)
    with _in_process():
        local.partial_fit(Xd, yd)
    np.testing.assert_array_equal(on_cluster.coef_, local.coef_)
    Xc, yc = _classification(19, 3)
    Xcd = _as_dask(Xc).rechunk((UNEVEN, Xc.shape[1]))
    clf = SAGAClassifier(alpha=0.01, random_state=0, max_iter=6, tol=0)
    on_cluster = clone(clf).fit(Xcd, da.from_array(yc, chunks=70))
    with _in_process():
        local = clone(clf).fit(Xcd, da.from_array(yc, chunks=70))
    np.testing.assert_array_equal(on_cluster.coef_, local.coef_)
    np.testing.assert_array_equal(on_cluster.predict(Xcd).compute(), local.predict(Xc))
