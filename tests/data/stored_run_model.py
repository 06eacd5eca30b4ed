"""Models of the stored-run fixture (``stored_run_v0.1.0.db``).

The fixture's configuration refers to these functions by module and name (cloudpickle pickles
importable functions by reference), so this module must keep its name, its place on the test
path (``tests/data`` is importable as ``stored_run_model`` when it is on ``sys.path``) and the
behaviour of both functions for as long as the fixture is tested. Never change them.
"""

from __future__ import annotations

import numpy as np


def shift(p, rng):
    """One location parameter; two statistics on very different scales."""
    noise = rng.standard_normal(3)
    return {"y": p["x"] + 0.3 * noise[0], "z": 50.0 * p["x"] + 20.0 * noise[1:]}


def scaled(p, rng):
    """A location and a positive scale parameter, the same statistics."""
    noise = rng.standard_normal(3)
    return {"y": p["a"] + p["s"] * noise[0],
            "z": 50.0 * p["a"] + 20.0 * p["s"] * noise[1:]}


OBSERVED = {"y": 0.8, "z": np.array([40.0, 45.0])}
