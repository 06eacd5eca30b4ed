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

Two more private methods let :class:`dabc.RV` reject bad parameters when the prior is built
(scipy itself freezes any values and only returns NaN draws later): ``dist._argcheck(*shapes)``
(True where scipy accepts the shape values; every distribution has it, checked on scipy
1.17.1) in :func:`shapes_valid`, and ``dist._shape_info()`` (each shape's name, domain,
inclusive ends and integrality; scipy >= 1.9) in :func:`shape_domains`, which only words the
message. Fallback: without ``_argcheck`` no shape check is made (scipy's draws then show the
problem, as before); without ``_shape_info`` the message names the parameters but not their
ranges.
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import numpy as np
import scipy.stats

__all__ = ["ShapeDomain", "parse_args", "parse_args_public", "shape_domains", "shapes_valid"]

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


def shapes_valid(dist: Any, shape_args: tuple) -> bool:
    """Whether scipy accepts these shape parameter values (``dist._argcheck``).

    Parameters
    ----------
    dist : scipy.stats.rv_continuous or scipy.stats.rv_discrete
        The distribution (not frozen).
    shape_args : tuple
        One value per shape parameter, in the order of ``dist.shapes``.

    Returns
    -------
    bool
        False when scipy rejects them (it would draw NaN); True when it accepts them, or
        when this scipy has no ``_argcheck`` (nothing is checked then).
    """
    check = getattr(dist, "_argcheck", None)
    if check is None:
        return True
    try:
        return bool(np.all(check(*shape_args)))
    except Exception:  # noqa: BLE001 - a value scipy cannot even compare: not valid
        return False


class ShapeDomain(NamedTuple):
    """A shape parameter's allowed values, from scipy's ``_shape_info()``."""

    name: str
    low: float
    high: float
    low_inclusive: bool
    high_inclusive: bool
    integer: bool


def shape_domains(dist: Any) -> list[ShapeDomain] | None:
    """Each shape parameter's domain, in the order of ``dist.shapes``, or None if unknown.

    Parameters
    ----------
    dist : scipy.stats.rv_continuous or scipy.stats.rv_discrete
        The distribution (not frozen).

    Returns
    -------
    list of ShapeDomain or None
        None when this scipy has no ``_shape_info`` or it gives something else.
    """
    info = getattr(dist, "_shape_info", None)
    if info is None:
        return None
    try:
        out = []
        for item in info():
            (low, high), (low_in, high_in) = item.domain, item.inclusive
            low, high = float(low), float(high)
            if 0 < low < 1e-300:  # scipy writes "> 0" as "the smallest float on"
                low, low_in = 0.0, False
            out.append(ShapeDomain(str(item.name), low, high, bool(low_in), bool(high_in),
                                   bool(item.integrality)))
        return out
    except Exception:  # noqa: BLE001 - another layout: only the wording suffers
        return None
