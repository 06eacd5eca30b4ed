"""Benchmark dabc.learn's SAGA estimators against scikit-learn's ``solver="saga"``.

Problems (the same data, regularisation and tolerance for both libraries):

* dense 200,000 x 100: ridge (``Ridge(alpha=A)`` = ours with ``alpha = A / n``) and binary
  logistic regression (``LogisticRegression(C=C)`` = ours with ``alpha = 1 / (C n)``);
* CSR 200,000 x 10,000 at 1% density: the same two models (ridge without intercept, because
  scikit-learn's saga cannot fit one on sparse data).

Each problem is fitted ``--repeats`` times, scikit-learn and dabc interleaved in the same
process, so that the load from other work on the machine hits both alike; the JSON printed on
stdout gives per-library median fit time (time to reach ``tol``), epochs, final objective (ours:
``F = (1/n) sum loss + penalty``, scikit-learn's weights evaluated in the same ``F``), its
relative gap to a reference optimum (direct/lbfgs solver), the ratio of median times and the
load average before and after.

Run: ``python benchmarks/bench_saga.py [--repeats 3] [--quick] [--only dense|sparse]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings

import numpy as np
import scipy.sparse as sp
from scipy.special import expit
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge

from dabc.learn import SAGAClassifier, SAGARegressor


def dense_data(n: int, p: int, seed: int = 0):
    """Standard normal features, a linear target with unit noise and logistic labels."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    w = rng.standard_normal(p) / np.sqrt(p) * 3
    y = X @ w + 0.5 + rng.standard_normal(n)
    labels = (rng.random(n) < expit(X @ w - 0.3)).astype(np.int64)
    return X, y, labels


def sparse_data(n: int, p: int, density: float, seed: int = 1):
    """CSR with ``density * p`` nonzeros per row at uniform random columns, N(0, 1) values."""
    rng = np.random.default_rng(seed)
    per_row = max(1, int(round(density * p)))
    cols = np.sort(rng.integers(0, p, size=(n, per_row)), axis=1).ravel()
    vals = rng.standard_normal(n * per_row)
    X = sp.csr_matrix((vals, cols, np.arange(0, n * per_row + 1, per_row)), shape=(n, p))
    X.sum_duplicates()
    w = rng.standard_normal(p) / np.sqrt(per_row) * 3
    z = X @ w
    y = z + rng.standard_normal(n)
    labels = (rng.random(n) < expit(z + 0.2)).astype(np.int64)
    return X, y, labels


def squared_F(X, y, coef, intercept, alpha) -> float:
    r = X @ coef + intercept - y
    return 0.5 * float(r @ r) / len(y) + 0.5 * alpha * float(coef @ coef)


def logistic_F(X, labels, coef, intercept, alpha) -> float:
    z = X @ np.ravel(coef) + float(np.ravel(intercept)[0])
    s = np.where(labels == 1, 1.0, -1.0)
    return float(np.mean(np.logaddexp(0.0, -s * z))) + 0.5 * alpha * float(np.sum(coef ** 2))


def problems(sizes: dict, only: str | None):
    """(name, X, target, kind, sklearn factory, dabc factory, objective, reference solver)."""
    tol = 1e-4
    out = []
    if only in (None, "dense"):
        X, y, lab = dense_data(sizes["dense_n"], sizes["dense_p"])
        n = X.shape[0]
        out += [
            ("dense ridge", X, y, dict(
                sklearn=lambda: Ridge(alpha=1.0, solver="saga", tol=tol, random_state=0),
                dabc=lambda: SAGARegressor(alpha=1.0 / n, tol=tol, random_state=0),
                F=lambda est: squared_F(X, y, est.coef_, est.intercept_, 1.0 / n),
                reference=lambda: Ridge(alpha=1.0, solver="cholesky").fit(X, y))),
            ("dense logistic", X, lab, dict(
                sklearn=lambda: LogisticRegression(C=1.0, solver="saga", tol=tol,
                                                   random_state=0),
                dabc=lambda: SAGAClassifier(alpha=1.0 / n, tol=tol, random_state=0),
                F=lambda est: logistic_F(X, lab, est.coef_, est.intercept_, 1.0 / n),
                reference=lambda: LogisticRegression(C=1.0, solver="lbfgs", tol=1e-12,
                                                     max_iter=10_000).fit(X, lab))),
        ]
    if only in (None, "sparse"):
        Xs, ys, labs = sparse_data(sizes["sparse_n"], sizes["sparse_p"], 0.01)
        ns = Xs.shape[0]
        out += [
            ("sparse ridge (no intercept)", Xs, ys, dict(
                sklearn=lambda: Ridge(alpha=1.0, solver="saga", tol=tol, fit_intercept=False,
                                      random_state=0),
                dabc=lambda: SAGARegressor(alpha=1.0 / ns, tol=tol, fit_intercept=False,
                                           random_state=0),
                F=lambda est: squared_F(Xs, ys, est.coef_, est.intercept_, 1.0 / ns),
                reference=lambda: Ridge(alpha=1.0, solver="sparse_cg", tol=1e-12,
                                        fit_intercept=False, max_iter=100_000).fit(Xs, ys))),
            ("sparse logistic", Xs, labs, dict(
                sklearn=lambda: LogisticRegression(C=1.0, solver="saga", tol=tol,
                                                   random_state=0),
                dabc=lambda: SAGAClassifier(alpha=1.0 / ns, tol=tol, random_state=0),
                F=lambda est: logistic_F(Xs, labs, est.coef_, est.intercept_, 1.0 / ns),
                reference=lambda: LogisticRegression(C=1.0, solver="lbfgs", tol=1e-12,
                                                     max_iter=10_000).fit(Xs, labs))),
        ]
    return out


def _epochs(est) -> int:
    return int(np.max(est.n_iter_))


def run(repeats: int, sizes: dict, only: str | None) -> dict:
    """Fit every problem ``repeats`` times per library, interleaved; return the results."""
    SAGARegressor(max_iter=2).fit(np.ones((4, 2)), np.arange(4.0))  # load numba kernels once
    SAGARegressor(max_iter=2).fit(sp.csr_matrix(np.eye(4)), np.arange(4.0))
    results = {"load_average_before": os.getloadavg(), "cpu_count": os.cpu_count(),
               "python": platform.python_version(), "repeats": repeats, "problems": {}}
    for name, X, target, f in problems(sizes, only):
        t = time.perf_counter()
        ref = f["reference"]()
        F_ref = f["F"](ref)
        row = {"shape": list(X.shape), "reference_objective": F_ref,
               "reference_solver": type(ref).__name__ + "/" + str(ref.get_params()["solver"]),
               "reference_time_s": time.perf_counter() - t}
        times = {"sklearn": [], "dabc": []}
        last = {}
        for _ in range(repeats):
            for lib in ("sklearn", "dabc"):
                est = f[lib]()
                t = time.perf_counter()
                est.fit(X, target)
                times[lib].append(time.perf_counter() - t)
                last[lib] = est
        for lib in ("sklearn", "dabc"):
            F = f["F"](last[lib])
            row[lib] = {"median_fit_time_s": statistics.median(times[lib]),
                        "fit_times_s": times[lib], "epochs": _epochs(last[lib]),
                        "final_objective": F,
                        "relative_gap_to_reference": (F - F_ref) / abs(F_ref)}
        row["time_ratio_dabc_over_sklearn"] = (row["dabc"]["median_fit_time_s"]
                                              / row["sklearn"]["median_fit_time_s"])
        results["problems"][name] = row
        print(f"# {name}: sklearn {row['sklearn']['median_fit_time_s']:.2f}s "
              f"dabc {row['dabc']['median_fit_time_s']:.2f}s "
              f"ratio {row['time_ratio_dabc_over_sklearn']:.3f} load {os.getloadavg()[0]:.1f}",
              flush=True)
    results["load_average_after"] = os.getloadavg()
    return results


def main() -> None:
    """Parse arguments, run, print the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="10x smaller data (smoke test)")
    ap.add_argument("--only", choices=["dense", "sparse"], default=None)
    args = ap.parse_args()
    sizes = dict(dense_n=200_000, dense_p=100, sparse_n=200_000, sparse_p=10_000)
    if args.quick:
        sizes = {k: v // 10 for k, v in sizes.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = run(args.repeats, sizes, args.only)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
