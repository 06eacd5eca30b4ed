"""The observed summary statistics stored with a run, decoded without running code.

A run stores its observed data in the ``observed`` column of its row (``History.observed``)
as a pickle of a dict of numbers and numpy arrays. Unpickling runs whatever code a pickle
names, so a database of unknown origin is read with :class:`DataUnpickler`, which admits
only numbers, strings, containers and numpy arrays and refuses everything else with an
:class:`~dabc.InputError`. This lives in the storage layer so that everything reading a
stored run (``ABCSMC.load``, the plots, :func:`dabc.storage.inference_data.to_inference_data`)
shares one decoder; ``dabc.engine.config`` re-exports :func:`load_observed`.
"""

from __future__ import annotations

import io
import pickle

import cloudpickle

from ..errors import InputError

__all__ = ["SAFE_GLOBALS", "DataUnpickler", "load_observed"]

SAFE_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("builtins", "float"), ("builtins", "int"), ("builtins", "complex"),
    ("builtins", "list"), ("builtins", "tuple"), ("builtins", "dict"), ("builtins", "bytes"),
})
"""The (module, name) pairs :class:`DataUnpickler` resolves (plus numpy's ``*DType``
classes in ``numpy.dtypes``): what a pickle of numbers and numpy arrays needs."""


class DataUnpickler(pickle.Unpickler):
    """Unpickles numbers, strings, containers and numpy arrays, and nothing else.

    Any other global a pickle names (a function, a class, ``os.system``) raises an
    :class:`~dabc.InputError` before it is looked up, so no stored code runs.

    Parameters
    ----------
    file : binary file
        The pickle to read (e.g. ``io.BytesIO(blob)``).

    Examples
    --------
    >>> import io, pickle
    >>> DataUnpickler(io.BytesIO(pickle.dumps({"y": 1.5}))).load()
    {'y': 1.5}
    """

    def find_class(self, module: str, name: str):
        """The global ``module.name`` if it is data-only, else an InputError.

        Parameters
        ----------
        module : str
            The module the pickle names.
        name : str
            The name in it.

        Returns
        -------
        object
            The class or function, from :data:`SAFE_GLOBALS`.

        Raises
        ------
        InputError
            For anything else.
        """
        if (module, name) in SAFE_GLOBALS or (module.startswith("numpy.dtypes")
                                               and name.endswith("DType")):
            return super().find_class(module, name)
        raise InputError(f"The stored observed data refers to {module}.{name}, which would run "
                         "code when read; load with trust=True if you trust the database.")


def load_observed(blob: bytes, *, trust: bool = True) -> dict:
    """The observed summary statistics stored with a run.

    Parameters
    ----------
    blob : bytes
        The run's ``observed`` column (a pickle of numbers and numpy arrays).
    trust : bool, default True
        With False, only numbers, containers and numpy arrays are unpickled
        (:class:`DataUnpickler`).

    Returns
    -------
    dict
        Statistic name -> value, as passed to ``ABCSMC.run``.

    Raises
    ------
    InputError
        Without ``trust``, when the pickle refers to anything else; when the blob is not a
        pickle (a damaged database).

    Examples
    --------
    >>> import pickle
    >>> load_observed(pickle.dumps({"y": 1.0}), trust=False)
    {'y': 1.0}
    """
    try:
        if trust:
            return cloudpickle.loads(blob)
        return DataUnpickler(io.BytesIO(bytes(blob))).load()
    except InputError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise InputError(f"The stored observed data cannot be read ({type(exc).__name__}: "
                         f"{exc}); the database is damaged or was not written by dabc.") from exc
