"""The one private method of ``scipy.stats`` dabc calls, behind one door.

:class:`dabc.RV` draws the common distributions with numpy's generator directly (a numpy
``Generator`` method costs well under a microsecond, scipy's ``rvs`` about 20 per call), and for
that needs a distribution's arguments the way scipy binds them: ``(shape args), loc, scale``.
scipy does this binding in the private method ``rv_generic._parse_args(*args, **kwds)``, which
it generates for every distribution from the distribution's ``shapes``; a frozen distribution's
public ``args`` and ``kwds`` only hold what the user passed (positional or by keyword, with the
defaults missing).

Relies on: ``dist._parse_args(*args, **kwds) -> (shape_args, loc, scale)``, with
``scale == 1`` for discrete distributions. Checked on scipy 1.17.1 (the version installed when
this was written; the method has had this form since before scipy 1.0).

Fallback, for a distribution without ``_parse_args``: :func:`parse_args_public`, which binds the
same arguments to the signature ``(*shapes, loc=0, scale=1)`` (``(*shapes, loc=0)`` for a
discrete distribution) built from the public attribute ``dist.shapes`` -- the rule scipy's
generated method follows. ``tests/test_compat.py`` checks that both give the same answer. Either
raises ``TypeError`` for arguments the distribution does not take; :class:`dabc.RV` then uses
scipy's own ``rvs`` (same distribution, slower).
"""

from __future__ import annotations

import inspect
from typing import Any

import scipy.stats

__all__ = ["parse_args", "parse_args_public"]

_POS = inspect.Parameter.POSITIONAL_OR_KEYWORD


def parse_args(dist: Any, args: tuple, kwargs: dict) -> tuple[tuple, Any, Any]:
    """``(shape_args, loc, scale)`` of ``dist(*args, **kwargs)``, bound as scipy binds them.

    Parameters
    ----------
    dist : scipy.stats.rv_continuous or scipy.stats.rv_discrete
        The distribution (not frozen), e.g. ``scipy.stats.gamma``.
    args, kwargs : tuple, dict
        The arguments the distribution was (or would be) frozen with.

    Returns
    -------
    tuple
        ``(shape_args, loc, scale)``; ``scale`` is 1 for a discrete distribution.

    Raises
    ------
    TypeError
        If the distribution does not take these arguments.
    """
    private = getattr(dist, "_parse_args", None)
    if private is None:
        return parse_args_public(dist, args, kwargs)
    return private(*args, **kwargs)


def parse_args_public(dist: Any, args: tuple, kwargs: dict) -> tuple[tuple, Any, Any]:
    """:func:`parse_args` from public attributes only (the fallback; same parameters)."""
    shapes = [s.strip() for s in dist.shapes.split(",")] if dist.shapes else []
    params = [inspect.Parameter(name, _POS) for name in shapes]
    params.append(inspect.Parameter("loc", _POS, default=0))
    discrete = isinstance(dist, scipy.stats.rv_discrete)
    if not discrete:
        params.append(inspect.Parameter("scale", _POS, default=1))
    bound = inspect.Signature(params).bind(*args, **kwargs)
    bound.apply_defaults()
    values = bound.arguments
    return (tuple(values[name] for name in shapes), values["loc"],
            1 if discrete else values["scale"])
