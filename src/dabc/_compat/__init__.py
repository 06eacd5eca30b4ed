"""Compatibility modules: every use of another library's private API goes through one of these.

Each module says in its docstring what it relies on, on which versions it was checked, and what
happens when it breaks (a public-API fallback where one exists, else a :class:`dabc.DabcError`
that names the version to install). ``tests/test_compat.py`` and ``tests/test_stan.py``
exercise each on the installed versions.

- :mod:`.scipy`: ``rv_generic._parse_args`` (how :class:`dabc.RV` reads a distribution's
  loc, scale and shapes for its fast numpy draws), ``_argcheck`` and ``_shape_info`` (its
  check of the parameters when the prior is built).
- :mod:`.sklearn`: ``sklearn.linear_model._base.LinearClassifierMixin`` (predictions of
  :class:`dabc.learn.SAGAClassifier`).
- :mod:`.dask_array`: ``dask.array.Array._meta`` (the chunk type of a Dask ``X`` in
  :mod:`dabc.learn`).
- :mod:`.distributed`: ``Client._scatter`` and a worker's task state (the Dask sampler).
- :mod:`.futures`: ``Executor._max_workers`` (:class:`dabc.ConcurrentFutureSampler`).
- :mod:`.httpstan`: httpstan's build, cache layout and socket protocol (:mod:`dabc.stan`).
- :mod:`.sqlalchemy`: ``Engine.dialect``, ``Pool._dialect`` and ``Engine._compiled_cache``
  (one SQLite dialect and compiled-statement cache for all of a process's SQLite files).
- :mod:`.numpy_random`: numpy's SeedSequence and PCG64 seeding algorithms and PCG64's state
  dict (a vectorized model's block streams re-keyed instead of built; checked against numpy
  in every process, numpy's own streams otherwise).
- :mod:`.cloudpickle`: ``cloudpickle.Pickler``'s code reducer (a model's traceback names the
  user's file, not ``<dynamic-code>``).

This package sits at the bottom of dabc's layers, just above ``errors``: it imports nothing of
dabc but the errors, and the subpackages above import it.
"""
