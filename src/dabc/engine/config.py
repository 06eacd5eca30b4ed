"""Stored runs: the engine's configuration and per-generation state as explicit, versioned JSON.

Why
---
A stored run must outlive the code that wrote it. dabc 0.1.0 stored ``ABCSMC``'s attributes as a
cloudpickled dict and restored them with ``__dict__.update``: renaming one private attribute
broke every stored run, and unpickling a crafted database runs whatever code it holds. This
module writes what a run *is* — population size, seed, priors by parameter name, each
component by a registered name with its constructor arguments and learned state — as a JSON
object that names every field, and rebuilds the engine by calling constructors with them.

Only what cannot be named is stored as code: the model functions, a user's distance function,
user subclasses, fitted scikit-learn regressors. Each such value is a cloudpickle blob in a field
marked ``"$code"``, so a reader can see exactly where code would run before running any of it
(:func:`read_config` never unpickles; ``ABCSMC.load(..., trust=False)`` refuses code). The
models are always code, so ``trust=False`` loads a run only when the caller supplies its own
model functions (``ABCSMC.load(db, trust=False, models=[f, ...])``) and nothing else in the
run is code; the observed data is then unpickled with an unpickler that admits only numbers,
containers and numpy arrays.

Format (version 1)
------------------
The ``config`` column of a run holds one JSON object (UTF-8)::

    {"format": "dabc-config", "version": 1, "written_by": "dabc 0.1.0",
     "population_size": 120, "seed": 42, "model_prior": [0.6, 0.4],
     "stay_probability": 0.8, "max_failure_rate": 0.2, "stream_scheme": 3,
     "models": [{"name": "shift", "function": {"$code": ...}}, ...],
     "priors": [[{"parameter": "x", "distribution": "norm", "args": [0, 2], "kwargs": {}}],
                ...],
     "distance": {"$component": {"name": "AdaptivePNormDistance",
                                 "params": {"p": 1.0, "scale": "std"}, "state": {"w": ...}}},
     "epsilon": {"$component": {"name": "QuantileEpsilon", "params": {...}, "state": {}}},
     "transitions": [{"$component": {...}}, ...]}

and each generation's ``state`` column one JSON object ``{"format": "dabc-state", "version": 1,
"eps": <next generation's threshold or null>, "distance": <component>, "epsilon": <component>}``
(the full components, so a resume needs no other row).

``stream_scheme`` names how random streams derive from ``(seed, t, i)``
(:mod:`dabc.engine.work`); a configuration without it (written before the field existed,
or by dabc 0.1.0) is scheme 1, and a run resumes under the scheme it was started with.

Values are JSON, with tagged objects for what JSON lacks: ``{"$float": "inf"}`` (also
``"-inf"``, ``"nan"``), ``{"$array": {"dtype": "<f8", "shape": [3], "data": <base64>}}`` (the
raw bytes, so arrays round-trip bit for bit), ``{"$dict": {...}}`` (a dict whose keys start
with ``$``), ``{"$component": {"name", "params", "state"}}`` (a registered class: see
:data:`COMPONENTS`) and ``{"$code": {"type": <qualified name>, "pickle": "cloudpickle",
"data": <base64>}}``. Finite floats are written with ``repr`` and read back exactly.

A component is described by name only when its type is exactly a registered class; a subclass
is code (its behaviour lives in the user's code). Anything a format version does not know — a
newer version, an unknown component or tag — is refused with an :class:`~dabc.InputError`
that says to upgrade dabc.

Legacy runs
-----------
Blobs that do not start with ``{`` are the cloudpickle format of dabc 0.1.0. They are read by
mapping that release's attribute names (listed here, frozen) onto the constructor fields, never
by restoring whatever attributes the pickle holds; the classes it names are resolved through
:data:`LEGACY_CLASSES`, which must follow any later move or rename. Reading a legacy blob
unpickles it, so it needs ``trust=True``. ``tests/test_stored_runs.py`` loads and resumes a run
stored by 0.1.0 (``tests/data/stored_run_v0.1.0.db``).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cloudpickle
import numpy as np

from .._compat.cloudpickle import dumps as dumps_code
from ..errors import InputError
from ..storage.observed import DataUnpickler as _DataUnpickler  # noqa: F401  (its old name)
from ..storage.observed import load_observed
from .distance import AdaptivePNormDistance, Distance, FunctionDistance, PNormDistance
from .epsilon import ConstantEpsilon, Epsilon, ListEpsilon, MedianEpsilon, QuantileEpsilon
from .learned import LearnedStatisticsDistance
from .model import StatLayout
from .prior import RV, Prior
from .transition import LocalTransition, MultivariateNormalTransition, Transition

__all__ = [
    "COMPONENTS", "CONFIG_FORMAT", "LEGACY_CLASSES", "STATE_FORMAT", "VERSION", "EngineFields",
    "StoredCode", "StoredConfig", "dump_config", "dump_state", "load_config", "load_observed",
    "load_state", "read_config", "refuse_code", "register_component", "state_code",
]

logger = logging.getLogger("dabc.engine")

CONFIG_FORMAT = "dabc-config"
"""The ``"format"`` field of a run's stored configuration."""
STATE_FORMAT = "dabc-state"
"""The ``"format"`` field of a generation's stored state."""
VERSION = 1
"""The format version this dabc writes, and the newest it reads."""

COMPONENTS: dict[str, type] = {
    "PNormDistance": PNormDistance,
    "AdaptivePNormDistance": AdaptivePNormDistance,
    "FunctionDistance": FunctionDistance,
    "LearnedStatisticsDistance": LearnedStatisticsDistance,
    "QuantileEpsilon": QuantileEpsilon,
    "MedianEpsilon": MedianEpsilon,
    "ConstantEpsilon": ConstantEpsilon,
    "ListEpsilon": ListEpsilon,
    "MultivariateNormalTransition": MultivariateNormalTransition,
    "LocalTransition": LocalTransition,
}
"""Registered name -> class. The names are part of the stored format: a class may move or be
renamed, its registered name stays. Each class has ``get_config()`` (its constructor arguments
by name), ``get_state()`` and ``set_state(state)`` (what it learns during a run)."""

_NAMES = {cls: name for name, cls in COMPONENTS.items()}


def register_component(name: str, cls: type) -> None:
    """Store instances of ``cls`` (exactly that type) by ``name`` instead of as code.

    ``cls`` must provide ``get_config()`` returning its constructor's keyword arguments,
    and ``get_state()``/``set_state(state)`` for what it learns during a run (the base classes
    :class:`~dabc.Distance`, :class:`~dabc.Epsilon` and :class:`~dabc.Transition` provide
    stateless defaults). A run that names a component can only be loaded where the same name
    is registered.

    Parameters
    ----------
    name : str
        The name written into stored runs; never reuse it for another class.
    cls : type
        A subclass of Distance, Epsilon or Transition.

    Raises
    ------
    InputError
        When ``name`` is already registered for another class, or ``cls`` lacks
        ``get_config``.
    """
    if COMPONENTS.get(name, cls) is not cls:
        raise InputError(f"Component name {name!r} is already registered for "
                         f"{COMPONENTS[name].__qualname__}; choose another name.")
    if not callable(getattr(cls, "get_config", None)):
        raise InputError(f"{cls.__qualname__} needs a get_config() method returning its "
                         "constructor arguments to be stored by name.")
    COMPONENTS[name] = cls
    _NAMES[cls] = name


# -- reading without running ---------------------------------------------------------------
@dataclass(frozen=True)
class StoredCode:
    """A code field of a stored run, described without unpickling it.

    Attributes
    ----------
    field : str
        Where it sits, e.g. ``"models[0].function"`` or ``"distance.params.fn"``.
    type : str
        The qualified type name recorded when it was stored (``"function"``, ``"mymod.MyDist"``).
    size : int
        Size of the pickle in bytes.
    """

    field: str
    type: str
    size: int


@dataclass
class StoredConfig:
    """The plain fields of a stored run's configuration, and where it holds code.

    Attributes
    ----------
    fields : dict
        The configuration with tagged values decoded (arrays, non-finite floats); components
        are ``{"name", "params", "state"}`` dicts, code values :class:`StoredCode`.
    code : list of StoredCode
        Every code field; empty when loading would run no stored code.
    """

    fields: dict[str, Any]
    code: list[StoredCode] = field(default_factory=list)


def read_config(source) -> StoredConfig:
    """Read a stored run's configuration without running any code it holds.

    Parameters
    ----------
    source : History or bytes
        A :class:`~dabc.History` opened on the run, or its ``config`` bytes.

    Returns
    -------
    StoredConfig
        The plain fields and the list of code fields (which are not unpickled).

    Raises
    ------
    InputError
        When the configuration is in the pickled format of dabc 0.1.0 (it cannot be read
        without unpickling), is of a newer format version, or is not a dabc configuration.

    Examples
    --------
    >>> cfg = read_config(dabc.History("sqlite:///run.db"))  # doctest: +SKIP
    >>> cfg.fields["population_size"], [c.field for c in cfg.code]  # doctest: +SKIP
    (1000, ['models[0].function'])
    """
    blob = source if isinstance(source, bytes | bytearray | memoryview) else source.config
    doc = _parse(bytes(blob), CONFIG_FORMAT, "config")
    if doc is None:
        raise InputError("This run's configuration is in the pickled format of dabc 0.1.0, "
                         "which cannot be read without unpickling it (and so running the code "
                         "it holds). If you trust the database, ABCSMC.load(db, trust=True) "
                         "reads it.")
    dec = _Decoder(mode="read")
    fields = {k: dec.value(v, k) for k, v in doc.items()}
    return StoredConfig(fields, dec.code)


# -- writing -------------------------------------------------------------------------------
def dump_config(*, models: Sequence[tuple[str, Callable]], priors: Sequence[Prior],
                population_size: int, seed: int, model_prior: Sequence[float],
                stay_probability: float, max_failure_rate: float, distance: Distance,
                epsilon: Epsilon, transitions: Sequence[Transition],
                written_by: str, stream_scheme: int = 3) -> bytes:
    """The ``config`` bytes of a run (format :data:`VERSION`).

    Parameters
    ----------
    models : sequence of (str, callable)
        Each model's name and function (stored as code).
    priors : sequence of Prior
        One per model.
    population_size, seed : int
        As given to ``ABCSMC``.
    model_prior : sequence of float
        The normalised prior model probabilities (stored exactly).
    stay_probability, max_failure_rate : float
        As given to ``ABCSMC``.
    distance : Distance
        The run's distance, after ``initialize``.
    epsilon : Epsilon
        The epsilon schedule.
    transitions : sequence of Transition
        One per model.
    written_by : str
        The writing dabc's version, for information.
    stream_scheme : int, default 3
        The run's random stream scheme (:data:`dabc.engine.work.STREAM_SCHEME` for new runs).

    Returns
    -------
    bytes
        A UTF-8 JSON object.
    """
    enc = _Encoder()
    doc = {
        "format": CONFIG_FORMAT, "version": VERSION, "written_by": f"dabc {written_by}",
        "population_size": int(population_size), "seed": int(seed),
        "model_prior": [float(p) for p in model_prior],
        "stay_probability": float(stay_probability),
        "max_failure_rate": float(max_failure_rate),
        "stream_scheme": int(stream_scheme),
        "models": [{"name": str(name), "function": enc.code(fn)} for name, fn in models],
        "priors": [_prior_fields(p) for p in priors],
        "distance": enc.component(distance),
        "epsilon": enc.component(epsilon),
        "transitions": [enc.component(tr) for tr in transitions],
    }
    return _dumps(doc)


def dump_state(distance: Distance, epsilon: Epsilon, eps: float | None) -> bytes:
    """The ``state`` bytes stored with a generation: what the next generation starts from.

    Parameters
    ----------
    distance : Distance
        The distance after learning from this generation.
    epsilon : Epsilon
        The epsilon schedule.
    eps : float or None
        The next generation's threshold (None: the schedule is exhausted).

    Returns
    -------
    bytes
        A UTF-8 JSON object.
    """
    enc = _Encoder()
    return _dumps({"format": STATE_FORMAT, "version": VERSION, "eps": enc.value(eps),
                   "distance": enc.component(distance), "epsilon": enc.component(epsilon)})


# -- loading -------------------------------------------------------------------------------
@dataclass
class EngineFields:
    """What ``ABCSMC.load`` passes to the constructors, read from a stored configuration.

    Attributes
    ----------
    models : list of callable
        The model functions (or None for each model when the caller supplies them).
    model_names : list of str
        The models' names, in order.
    priors : list of Prior
        One per model.
    population_size, seed : int
        As the run was started with.
    model_prior : numpy.ndarray
        Exactly as stored (already normalised).
    stay_probability, max_failure_rate : float
        As the run was started with.
    distance : Distance
        Ready to use: initialised on the run's statistics layout, learned state restored.
    epsilon : Epsilon
        The epsilon schedule, with its learned state restored.
    transitions : list of Transition
        One per model (refitted before each generation, so they hold no learned state).
    code : list of str
        The code fields that were unpickled.
    stream_scheme : int
        The run's random stream scheme (1 when the stored configuration has none).
    """

    models: list
    model_names: list[str]
    priors: list[Prior]
    population_size: int
    seed: int
    model_prior: np.ndarray
    stay_probability: float
    max_failure_rate: float
    distance: Distance
    epsilon: Epsilon
    transitions: list[Transition]
    code: list[str]
    stream_scheme: int = 1


def load_config(blob: bytes, layout: StatLayout, *, trust: bool = True,
                skip_models: bool = False) -> EngineFields:
    """Rebuild the engine's fields from a run's ``config`` bytes (either format).

    Parameters
    ----------
    blob : bytes
        The run's ``config`` column.
    layout : StatLayout
        The run's statistics layout (from its observed data).
    trust : bool, default True
        Whether stored code may be unpickled. With False, a configuration holding code (other
        than the models when ``skip_models``) or in the legacy pickled format is refused.
    skip_models : bool, default False
        Do not unpickle the model functions (the caller supplies its own); ``models`` is then
        a list of None.

    Returns
    -------
    EngineFields

    Raises
    ------
    InputError
        Code without ``trust``; a newer format version; an unknown component; a damaged
        configuration.
    """
    doc = _parse(bytes(blob), CONFIG_FORMAT, "config")
    if doc is None:
        if not trust:
            raise refuse_code("its configuration is in the pickled format of dabc 0.1.0, and "
                          "reading it runs the code it holds")
        return _legacy_config(bytes(blob), layout, skip_models)
    dec = _Decoder(mode="build", trust=trust, skip=("models[",) if skip_models else ())
    f = {k: dec.value(v, k) for k, v in doc.items()}
    try:
        out = EngineFields(
            models=[m["function"] for m in f["models"]],
            model_names=[str(m["name"]) for m in f["models"]],
            priors=[_prior_from_fields(p) for p in f["priors"]],
            population_size=_int(f["population_size"]), seed=_int(f["seed"]),
            model_prior=np.array(f["model_prior"], dtype=float),
            stay_probability=float(f["stay_probability"]),
            max_failure_rate=float(f["max_failure_rate"]),
            distance=_distance(f["distance"], layout), epsilon=_ready(f["epsilon"]),
            transitions=[_ready(tr) for tr in f["transitions"]],
            code=[c.field for c in dec.code], stream_scheme=_int(f.get("stream_scheme", 1)))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError("The stored configuration is damaged or incomplete (missing or "
                         f"malformed field: {exc}); it cannot be resumed.") from exc
    return out


def _int(v) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{v!r} is not an integer")
    return v


def load_state(blob: bytes, layout: StatLayout, *,
               trust: bool = True) -> tuple[Distance, Epsilon, float | None]:
    """The distance, epsilon schedule and next threshold stored with a generation.

    Parameters
    ----------
    blob : bytes
        The generation's ``state`` column (either format).
    layout : StatLayout
        The run's statistics layout.
    trust : bool, default True
        Whether stored code may be unpickled.

    Returns
    -------
    distance : Distance
        Initialised, with its learned state restored.
    epsilon : Epsilon
    eps : float or None
        The next generation's threshold.

    Raises
    ------
    InputError
        As :func:`load_config`.
    """
    doc = _parse(bytes(blob), STATE_FORMAT, "generation state")
    if doc is None:
        if not trust:
            raise refuse_code("its generation state is in the pickled format of dabc 0.1.0, and "
                          "reading it runs the code it holds")
        state = _unpickle(_LegacyUnpickler(io.BytesIO(bytes(blob))).load,
                          "generation state of dabc 0.1.0")
        try:
            return (_distance(_legacy_component(state["distance"]), layout),
                    _ready(_legacy_component(state["epsilon"])),
                    None if state["eps"] is None else float(state["eps"]))
        except (KeyError, TypeError) as exc:
            raise InputError(f"A stored generation state of dabc 0.1.0 is damaged ({exc!r}); "
                             "the run cannot be resumed from it.") from exc
    dec = _Decoder(mode="build", trust=trust)
    try:
        eps = dec.value(doc["eps"], "eps")
        return (_distance(dec.value(doc["distance"], "distance"), layout),
                _ready(dec.value(doc["epsilon"], "epsilon")),
                None if eps is None else float(eps))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError("A stored generation state is damaged (missing or malformed field: "
                         f"{exc}); the run cannot be resumed from it.") from exc


def state_code(blob: bytes) -> list[str]:
    """The code fields of a generation's ``state`` (without unpickling them).

    Parameters
    ----------
    blob : bytes
        The generation's ``state`` column.

    Returns
    -------
    list of str
        Field names; ``["<pickled state of dabc 0.1.0>"]`` for the legacy format.
    """
    doc = _parse(bytes(blob), STATE_FORMAT, "generation state")
    if doc is None:
        return ["<pickled state of dabc 0.1.0>"]
    dec = _Decoder(mode="read")
    for k, v in doc.items():
        dec.value(v, k)
    return [c.field for c in dec.code]


def refuse_code(what: str) -> InputError:
    """The error for stored code met with ``trust=False``.

    Parameters
    ----------
    what : str
        Which part of the run holds code.

    Returns
    -------
    InputError
        Saying that the database holds code that would run, and how to proceed.
    """
    return InputError(
        f"This database holds code that would run when the run is loaded: {what}. Load it "
        "with trust=True only if you trust where the database comes from; to see its plain "
        "fields and which of them are code without running anything, use "
        "dabc.engine.config.read_config(dabc.History(db)); to run your own model functions "
        "instead of the stored ones, pass ABCSMC.load(..., models=[...]).")


# -- JSON values -----------------------------------------------------------------------------
def _dumps(doc: dict) -> bytes:
    return json.dumps(doc, allow_nan=False, separators=(",", ":")).encode()


def _parse(blob: bytes, fmt: str, what: str) -> dict | None:
    """The JSON document, or None for the legacy pickle format."""
    if not blob.lstrip()[:1] == b"{":
        return None
    try:
        doc = json.loads(blob.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"The stored {what} is not valid JSON ({exc}); the database is "
                         "damaged.") from exc
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise InputError(f"The stored {what} is not a {fmt!r} document (format "
                         f"{doc.get('format') if isinstance(doc, dict) else None!r}).")
    version = doc.get("version")
    if not isinstance(version, int) or version < 1:
        raise InputError(f"The stored {what} has no valid format version ({version!r}).")
    if version > VERSION:
        raise InputError(f"This run was stored by a newer dabc ({doc.get('written_by', '?')}, "
                         f"{what} format version {version}); this dabc reads versions up to "
                         f"{VERSION}. Upgrade dabc (pip install -U dabc) to load it.")
    return doc


def _qualname(obj) -> str:
    t = obj if isinstance(obj, type) else type(obj)
    if t.__name__ == "function":
        return f"function {getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', '?')}"
    return f"{t.__module__}.{t.__qualname__}"


class _Encoder:
    def code(self, obj) -> dict:
        data = dumps_code(obj)  # cloudpickle, keeping the code's file name and source
        return {"$code": {"type": _qualname(obj), "pickle": "cloudpickle",
                          "data": base64.b64encode(data).decode()}}

    def component(self, obj, with_state: bool = True) -> dict:
        name = _NAMES.get(type(obj))
        if name is None:
            return self.code(obj)
        spec = {"name": name, "params": self.value(obj.get_config())}
        if with_state:
            spec["state"] = self.value(obj.get_state())
        return {"$component": spec}

    def value(self, v):
        if v is None or isinstance(v, bool | str):
            return v
        if isinstance(v, int | np.integer) and not isinstance(v, np.bool_):
            return int(v)
        if isinstance(v, float | np.floating):
            v = float(v)
            return v if math.isfinite(v) else {"$float": repr(v)}
        if isinstance(v, np.bool_):
            return bool(v)
        if isinstance(v, np.ndarray) and v.dtype.kind in "biufc":
            a = np.ascontiguousarray(v)
            return {"$array": {"dtype": a.dtype.str, "shape": list(a.shape),
                               "data": base64.b64encode(a.tobytes()).decode()}}
        if isinstance(v, list | tuple):
            return [self.value(x) for x in v]
        if isinstance(v, dict) and all(isinstance(k, str) for k in v):
            out = {k: self.value(x) for k, x in v.items()}
            return {"$dict": out} if any(k.startswith("$") for k in v) else out
        if type(v) in _NAMES:
            return self.component(v, with_state=False)
        return self.code(v)


@dataclass
class _Spec:
    """A decoded component: registered name, constructor arguments, learned state."""

    name: str
    params: dict
    state: dict


class _Decoder:
    def __init__(self, mode: str, trust: bool = False, skip: tuple[str, ...] = ()):
        self.mode, self.trust, self.skip = mode, trust, skip
        self.code: list[StoredCode] = []

    def value(self, v, path: str):
        if isinstance(v, list):
            return [self.value(x, f"{path}[{i}]") for i, x in enumerate(v)]
        if not isinstance(v, dict):
            return v
        tags = [k for k in v if k.startswith("$")]
        if not tags:
            return {k: self.value(x, f"{path}.{k}") for k, x in v.items()}
        if len(v) != 1:
            raise InputError(f"Stored field {path} mixes a tag {tags[0]!r} with other keys; "
                             "the database is damaged.")
        tag, body = tags[0], v[tags[0]]
        if tag == "$float":
            return float(body)
        if tag == "$array":
            return np.frombuffer(base64.b64decode(body["data"]),
                                 dtype=np.dtype(body["dtype"])).reshape(body["shape"]).copy()
        if tag == "$dict":
            return {k: self.value(x, f"{path}.{k}") for k, x in body.items()}
        if tag == "$component":
            return self._component(body, path)
        if tag == "$code":
            return self._code(body, path)
        raise InputError(f"Stored field {path} has the tag {tag!r}, unknown to this dabc (format "
                         f"version {VERSION}); upgrade dabc to load this run.")

    def _component(self, body, path):
        name = body["name"]
        params = self.value(body.get("params", {}), f"{path}.params")
        state = self.value(body.get("state", {}), f"{path}.state")
        if self.mode == "read":
            return {"name": name, "params": params, "state": state}
        if name not in COMPONENTS:
            raise InputError(f"Stored field {path} names the component {name!r}, which this dabc "
                             f"does not know (known: {', '.join(sorted(COMPONENTS))}). Upgrade "
                             "dabc, or import the package that registers it "
                             "(dabc.engine.config.register_component) before loading.")
        return _Spec(name, params, state)

    def _code(self, body, path):
        data = base64.b64decode(body["data"])
        if self.mode == "read" or path.startswith(self.skip):
            self.code.append(StoredCode(path, str(body.get("type", "?")), len(data)))
            return None
        if not self.trust:
            raise refuse_code(f"field {path} is code ({body.get('type', '?')})")
        if body.get("pickle") != "cloudpickle":
            raise InputError(f"Stored field {path} is code pickled with "
                             f"{body.get('pickle')!r}, unknown to this dabc; upgrade dabc.")
        self.code.append(StoredCode(path, str(body.get("type", "?")), len(data)))
        return _unpickle(lambda: cloudpickle.loads(data), f"field {path}")


def _unpickle(load: Callable, what: str):
    """Run ``load``; a missing module or name becomes an InputError that says what to do."""
    try:
        return load()
    except (ModuleNotFoundError, AttributeError) as exc:
        raise InputError(f"Stored code ({what}) refers to {exc}, which is not importable here. "
                         "Make the module that defined it importable (the same code as when "
                         "the run was stored), e.g. by adding its folder to PYTHONPATH.") from exc
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise InputError(f"Stored {what} cannot be read ({type(exc).__name__}: {exc}); the "
                         "database is damaged or was not written by dabc.") from exc


def _build(spec: _Spec):
    """An instance from its registered name and arguments (nested components included)."""
    params = {k: _build(v) if isinstance(v, _Spec) else v for k, v in spec.params.items()}
    try:
        return COMPONENTS[spec.name](**params)
    except TypeError as exc:
        raise InputError(f"The stored arguments of {spec.name} ({sorted(params)}) do not fit "
                         f"this dabc's {spec.name}: {exc}.") from exc


def _ready(value):
    """A component (not a distance) ready to use; code values are used as unpickled."""
    if not isinstance(value, _Spec):
        return value
    obj = _build(value)
    obj.set_state(value.state)
    return obj


def _distance(value, layout: StatLayout) -> Distance:
    """A distance initialised on the layout with its learned state; code as unpickled (it was
    stored after ``initialize``)."""
    if not isinstance(value, _Spec):
        return value
    obj = _build(value)
    obj.initialize(layout)
    obj.set_state(value.state)
    return obj


def _prior_fields(prior: Prior) -> list[dict]:
    return [{"parameter": name, **_Encoder().value(rv.get_config())}
            for name, rv in prior.dists.items()]


def _prior_from_fields(fields: list[dict]) -> Prior:
    rvs = {}
    for f in fields:
        rvs[str(f["parameter"])] = RV(str(f["distribution"]), *f.get("args", []),
                                      **f.get("kwargs", {}))
    return Prior(rvs)


# -- the pickled format of dabc 0.1.0 ---------------------------------------------------------
@dataclass
class _Record:
    """An object of dabc 0.1.0 that is read by its attribute names, not restored as is."""

    path: str
    attrs: dict = field(default_factory=dict)

    def __setstate__(self, state):
        self.attrs = dict(state) if isinstance(state, dict) else {"__state__": state}


def _record_class(path: str) -> type:
    def new(cls, *args, **kwargs):
        return _Record(path)

    return type("_LegacyRecord", (), {"__new__": new})


def _legacy_rv(name, args, kwargs):
    return ("rv", name, tuple(args), dict(kwargs))


# (module, name) in dabc 0.1.0 -> what the legacy reader builds for it. Components resolve to
# today's classes (user subclasses of them unpickle normally); follow any move or rename here.
LEGACY_CLASSES: dict[tuple[str, str], Any] = {
    ("dabc.engine.model", "Model"): _record_class("Model"),
    ("dabc.engine.model", "StatLayout"): _record_class("StatLayout"),
    ("dabc.engine.prior", "Prior"): _record_class("Prior"),
    ("dabc.engine.prior", "_rebuild_rv"): _legacy_rv,
    ("dabc.engine.distance", "Distance"): Distance,
    ("dabc.engine.distance", "PNormDistance"): PNormDistance,
    ("dabc.engine.distance", "AdaptivePNormDistance"): AdaptivePNormDistance,
    ("dabc.engine.distance", "FunctionDistance"): FunctionDistance,
    ("dabc.engine.learned", "LearnedStatisticsDistance"): LearnedStatisticsDistance,
    ("dabc.engine.epsilon", "Epsilon"): Epsilon,
    ("dabc.engine.epsilon", "QuantileEpsilon"): QuantileEpsilon,
    ("dabc.engine.epsilon", "MedianEpsilon"): MedianEpsilon,
    ("dabc.engine.epsilon", "ConstantEpsilon"): ConstantEpsilon,
    ("dabc.engine.epsilon", "ListEpsilon"): ListEpsilon,
    ("dabc.engine.transition", "Transition"): Transition,
    ("dabc.engine.transition", "MultivariateNormalTransition"): MultivariateNormalTransition,
    ("dabc.engine.transition", "LocalTransition"): LocalTransition,
}
"""Classes and functions named by dabc 0.1.0 pickles and what they are read as today."""

# The constructor fields of each built-in component, from dabc 0.1.0's attribute names, and
# the learned state they held.
_LEGACY_PARAMS = {
    PNormDistance: lambda a: ({"p": a["p"], "weights": a["weights"]}, {}),
    AdaptivePNormDistance: lambda a: ({"p": a["p"], "scale": a["scale"]},
                                      {"w": a["w"]} if "w" in a else {}),
    FunctionDistance: lambda a: ({"fn": a["fn"]}, {}),
    LearnedStatisticsDistance: lambda a: (
        {"regressor": a["regressor"], "fit_generations": a["fit_generations"],
         "initial": None if a["initial"] is None else _legacy_component(a["initial"]),
         "dask_chunks": a["dask_chunks"], "min_simulations": a["min_simulations"]},
        _legacy_learned_state(a)),
    QuantileEpsilon: lambda a: ({"alpha": a["alpha"], "initial_epsilon": a["initial_epsilon"],
                                 "multiplier": a["multiplier"]}, {}),
    MedianEpsilon: lambda a: ({"initial_epsilon": a["initial_epsilon"],
                               "multiplier": a["multiplier"]}, {}),
    ConstantEpsilon: lambda a: ({"epsilon": a["epsilon"]}, {}),
    ListEpsilon: lambda a: ({"values": a["values"]}, {}),
    MultivariateNormalTransition: lambda a: ({"scaling": a["scaling"],
                                              "bandwidth": a["bandwidth"]}, {}),
    LocalTransition: lambda a: ({"k": a["k"], "k_fraction": a["k_fraction"],
                                 "scaling": a["scaling"]}, {}),
}


def _legacy_learned_state(a: dict) -> dict:
    state = {"fitted_at": list(a.get("fitted_at_", [])), "owed": bool(a.get("_owed", False))}
    if a.get("fitted_") is not None:
        reg, xm, xs = a["fitted_"]
        state.update(regressor=reg, x_mean=xm, x_scale=xs)
    initial = a.get("initial")
    if initial is not None and type(initial) in _LEGACY_PARAMS:
        state["initial"] = _LEGACY_PARAMS[type(initial)](vars(initial))[1]
    return state


class _LegacyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        target = LEGACY_CLASSES.get((module, name))
        return target if target is not None else super().find_class(module, name)


def _legacy_component(obj):
    """A dabc 0.1.0 component as a spec by today's names; user subclasses stay objects."""
    translate = _LEGACY_PARAMS.get(type(obj))
    if translate is None:
        return obj
    try:
        params, state = translate(vars(obj))
    except KeyError as exc:
        raise InputError(f"A stored {type(obj).__name__} of dabc 0.1.0 lacks the attribute "
                         f"{exc}; the database is damaged.") from exc
    return _Spec(_NAMES[type(obj)], params, state)


def _legacy_config(blob: bytes, layout: StatLayout, skip_models: bool) -> EngineFields:
    cfg = _unpickle(_LegacyUnpickler(io.BytesIO(blob)).load, "configuration of dabc 0.1.0")
    try:
        models = [m.attrs for m in cfg["models"]]
        priors = [Prior({name: RV(rv[1], *rv[2], **rv[3])
                         for name, rv in p.attrs["dists"].items()}) for p in cfg["priors"]]
        out = EngineFields(
            models=[None if skip_models else m["fn"] for m in models],
            model_names=[str(m["name"]) for m in models], priors=priors,
            population_size=int(cfg["population_size"]), seed=int(cfg["seed"]),
            model_prior=np.asarray(cfg["model_prior"], dtype=float),
            stay_probability=float(cfg["stay_probability"]),
            max_failure_rate=float(cfg["max_failure_rate"]),
            distance=_distance(_legacy_component(cfg["distance"]), layout),
            epsilon=_ready(_legacy_component(cfg["epsilon"])),
            transitions=[_ready(_legacy_component(tr)) for tr in cfg["transitions"]],
            code=["<pickled config of dabc 0.1.0>"])
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise InputError(f"The stored configuration of dabc 0.1.0 is damaged ({exc!r}); it "
                         "cannot be resumed.") from exc
    return out

