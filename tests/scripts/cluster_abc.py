"""A small ABC-SMC for tests/test_cluster_modes.py, on the sampler named on the command line.

Usage: python cluster_abc.py DB_PATH SAMPLER [REPORT_JSON]

SAMPLER is ``multicore`` (the reference: MulticoreEvalParallelSampler(2)), ``dask`` (the
batch job's own cluster through ``dabc.cluster.connect()``), ``grab:NAME`` (a grab-mode
cluster through ``dabc.cluster.connect(NAME)``) or ``redis`` (``RedisEvalParallelSampler()``,
which reads ``DABC_REDIS_URL``, ``DABC_REDIS_PASSWORD`` and ``DABC_REDIS_SECRET`` set by the
batch job). REPORT_JSON, when given, receives what the script saw of its cluster (workers;
for Redis whether the server refused a client without the password, and one without TLS).

The model lives in ``__main__``: cloudpickle ships it to the workers by value.
"""

import json
import os
import sys
import time

import dabc
import dabc.cluster

SEED = 4_242_017
POPULATION = 60
GENERATIONS = 3
OBSERVED = {"y": 1.0}
PRIOR = dabc.Prior(x=dabc.RV("norm", 0, 1))


def model(p, rng):
    time.sleep(0.002 * rng.random())  # tasks finish out of order
    return {"y": p["x"] + 0.3 * rng.standard_normal()}


def run(sampler, db: str) -> dabc.History:
    """The run every test compares: same model, prior, population and seed."""
    abc = dabc.ABCSMC(model, PRIOR, population_size=POPULATION, sampler=sampler, seed=SEED,
                      progress=False)
    return abc.run(OBSERVED, db=f"sqlite:///{db}", max_generations=GENERATIONS)


def _plain_tcp(address: str) -> str:
    """Whether the scheduler accepts a client over plain TCP (it must not)."""
    from distributed import Client

    try:
        Client(address.replace("tls://", "tcp://"), timeout=3, set_as_default=False).close()
        return "accepted"
    except (OSError, TimeoutError) as exc:
        return f"refused: {type(exc).__name__}"


def _redis_refusals() -> dict:
    import redis

    url = os.environ["DABC_REDIS_URL"]
    # the password, for the test to check it appears nowhere else (the job's output)
    out = {"url_has_password": os.environ["DABC_REDIS_PASSWORD"] in url,
           "password": os.environ["DABC_REDIS_PASSWORD"]}
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
        out["without_password"] = "accepted"
    except redis.AuthenticationError as exc:
        out["without_password"] = f"refused: {exc}"
    except redis.RedisError as exc:
        out["without_password"] = f"error: {type(exc).__name__}: {exc}"
    host, port = url.split("://")[1].split("/")[0].rsplit(":", 1)
    try:  # the right password, but plain TCP (no TLS)
        redis.Redis(host=host, port=int(port), password=os.environ["DABC_REDIS_PASSWORD"],
                    socket_connect_timeout=3, retry=None).ping()
        out["without_tls"] = "accepted"
    except redis.RedisError as exc:
        out["without_tls"] = f"refused: {type(exc).__name__}"
    with redis.Redis.from_url(url, password=os.environ["DABC_REDIS_PASSWORD"]) as r:
        out["with_password"] = r.ping()
    return out


def main() -> int:
    db, which = sys.argv[1], sys.argv[2]
    report = {}
    client = None
    if which == "multicore":
        sampler = dabc.MulticoreEvalParallelSampler(2)
    elif which == "dask" or which.startswith("grab:"):
        client = dabc.cluster.connect(which[5:] if which.startswith("grab:") else None)
        info = client.scheduler_info(n_workers=-1)
        report["workers"] = len(info["workers"])
        report["address"] = client.scheduler.address
        report["plain_tcp"] = _plain_tcp(client.scheduler.address)
        sampler = dabc.DaskDistributedSampler(client)
    elif which == "redis":
        report.update(_redis_refusals())
        sampler = dabc.RedisEvalParallelSampler()
    else:
        raise SystemExit(f"unknown sampler {which!r}")
    h = run(sampler, db)
    report["generations"] = h.n_populations
    if client is not None:
        client.close()
    if len(sys.argv) > 3:
        with open(sys.argv[3], "w") as f:
            json.dump(report, f)
    print(f"cluster_abc: {which}: {h.n_populations} generations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
