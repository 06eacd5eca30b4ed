"""The ``dabc`` command line (the top layer: it only parses arguments, calls the library
and prints).

- :mod:`dabc.cli.main`: ``dabc demo``, ``dabc info``, ``dabc export`` and the entry point.
- :mod:`dabc.cli.redis_cli`: ``dabc redis-worker`` and ``dabc redis-manager``.
- :mod:`dabc.cli.dispatch`: the exit-code rule both entry points share.
- :mod:`dabc.cli.argtypes`: the ``argparse`` value types several subcommands share.
- :mod:`dabc.cli.demo`: the model ``dabc demo`` runs.
"""
