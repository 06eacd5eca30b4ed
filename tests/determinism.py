"""Shared checks of the determinism contract: snapshot a run and compare bit for bit."""

from __future__ import annotations

import numpy as np

import dabc

FIELDS = ("theta", "weight", "distance", "stats", "id")


def snapshot(h: dabc.History) -> dict:
    """Everything the determinism contract covers, read back from the database."""
    pops = h.get_all_populations()
    return {"t": pops.t.to_numpy(), "epsilon": pops.epsilon.to_numpy(),
            "n_simulations": pops.n_simulations.to_numpy(),
            "model_probabilities": h.get_model_probabilities().to_numpy(),
            "arrays": [{m: {k: a[k] for k in FIELDS} for m, a in h.get_arrays(int(t)).items()}
                       for t in pops.t]}


def assert_same(got: dict, ref: dict, generations: int | None = None,
                rtol: float | None = None) -> None:
    """Bit-identical populations (theta, weights, ids, ...), epsilons and simulation counts.

    With ``generations``, ``got`` must equal the first that many generations of ``ref``.
    With ``rtol``, floating-point values may differ by that relative amount (plus 1e-12
    absolute) and everything else must still be equal: for a reference computed on another
    machine, whose numpy/OpenBLAS kernels (chosen per CPU) round sums and factorisations in
    the last bits differently. The accepted evaluation ids, the simulation counts and the
    models present stay exact.
    """
    def same(a, b, msg):
        a, b = np.asarray(a), np.asarray(b)
        if rtol is not None and a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12, err_msg=msg)
        else:
            np.testing.assert_array_equal(a, b, err_msg=msg)

    k = len(ref["t"]) if generations is None else generations
    assert len(got["t"]) == k, f"{len(got['t'])} generations stored, expected {k}"
    for key in ("t", "epsilon", "n_simulations", "model_probabilities"):
        same(got[key], ref[key][:k], key)
    for t, (g, r) in enumerate(zip(got["arrays"], ref["arrays"][:k], strict=True)):
        assert sorted(g) == sorted(r), f"generation {t}: models present differ"
        for m in r:
            for f in FIELDS:
                same(g[m][f], r[m][f], f"generation {t}, model {m}, {f}")
