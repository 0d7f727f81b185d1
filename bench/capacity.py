#!/usr/bin/env python3
"""Capacity model for dynpage scaled out (README, "Scaling out").

How many render hosts, and what Redis load, for a site: requests per second over a catalogue of
pages whose popularity follows Zipf's law, served by N render hosts behind a load balancer
that either hashes the URI (`hash $request_uri consistent`) or spreads requests round robin.

The model, per worker (each worker has its own cache; requests reach a host's workers evenly):
  - a worker's cache holds K pages: dynpage_cache_size / bytes per cached page (its meta, the
    live version's parsed snapshot, its share of templates); it keeps the most requested ones
    (an LRU under a Zipf load holds close to the top K);
  - a host sees the pages it is sent: all of them (round robin), or 1/N of them (consistent
    hash, which keeps Zipf's shape within each host's share);
  - hit ratio = the share of requests going to the pages the cache holds, H(K, s) / H(M, s)
    with H the generalized harmonic number and M the pages a host sees;
  - a cached page still asks Redis for its meta once per dynpage_cache_ttl while it is asked
    for, and once per publish of it (events), on every worker holding it;
  - a miss costs one fetch: two round trips, sizes then values (`HLEN`, 2 `HGET`, `HSTRLEN`;
    `HKEYS`, `HGET`: 6 commands); a meta refresh 4 commands (`HLEN`, 2 `HGET`, `HKEYS`);
  - CPU: a hit costs `--hit-us` of a core (kept output; the benchmark's 38,600 req/s on one core
    is about 26 us), a miss `--miss-us` more (the fetch's preparation and a render).

Every input is a flag; the defaults are the product-detail workload of the benchmark. Example:

    bench/capacity.py --rps 200000 --pages 2000000 --hosts 8 --workers 16
    bench/capacity.py --rps 200000 --pages 2000000 --hosts 8 --workers 16 --round-robin

It prints the hit ratio, the Redis commands per second (in all, per primary, per replica when
reads go to replicas) and the cores each host needs, and checks them against --redis-ops and
--cores. Measured inputs beat these defaults: run `make bench` on your hardware, and read
hits and misses from dynpage_status (`dynpage_cache_lookups_total`).
"""

import argparse
import math
import sys


def harmonic(n, s):
    """H(n, s) = sum_{k=1..n} k^-s, exactly up to 10^5 terms, then by the Euler-Maclaurin
    tail (accurate to far better than the model)."""
    n = int(n)
    if n <= 0:
        return 0.0
    exact = min(n, 100_000)
    h = math.fsum(k ** -s for k in range(1, exact + 1))
    if n > exact:
        a, b = exact, n
        if abs(s - 1.0) < 1e-12:
            tail = math.log(b / a)
        else:
            tail = (b ** (1 - s) - a ** (1 - s)) / (1 - s)
        tail += (b ** -s - a ** -s) / 2
        h += tail
    return h


def model(a):
    pages_per_host = a.pages if a.round_robin else math.ceil(a.pages / a.hosts)
    cache_pages = max(1, int(a.cache_mb * 2**20 / a.page_bytes))
    held = min(cache_pages, pages_per_host)
    hit = harmonic(held, a.zipf) / harmonic(pages_per_host, a.zipf)

    host_rps = a.rps / a.hosts
    worker_rps = host_rps / a.workers
    misses_per_worker = worker_rps * (1 - hit)

    # Meta refreshes: each held page asked at least once per TTL refreshes once per TTL.
    # Page k (rank within the host's share) is asked worker_rps * k^-s / H times a second.
    h_host = harmonic(pages_per_host, a.zipf)
    ttl = max(a.ttl, 1e-3)
    # Pages asked more often than once per TTL: rank k with rate >= 1/ttl.
    k_hot = (worker_rps * ttl / h_host) ** (1 / a.zipf) if worker_rps > 0 else 0
    k_hot = min(held, int(k_hot))
    # Hot pages refresh once per TTL; colder held pages refresh about as often as they are
    # asked (each request after its TTL ran out is a refresh).
    cold_rate = worker_rps * (harmonic(held, a.zipf) - harmonic(k_hot, a.zipf)) / h_host
    refresh_per_worker = k_hot / ttl + cold_rate
    # Publishes: each publish of a page refreshes it on every worker that holds it.
    holders = a.workers * (a.hosts if a.round_robin else 1)
    publish_refresh = a.publishes * holders * min(1.0, held / pages_per_host)

    workers_total = a.workers * a.hosts
    fetch_cmds = 6 * misses_per_worker * workers_total
    refresh_cmds = 4 * refresh_per_worker * workers_total + 4 * publish_refresh
    redis_cmds = fetch_cmds + refresh_cmds
    per_primary = redis_cmds / a.primaries
    per_replica = redis_cmds / (a.primaries * max(1, a.replicas)) if a.replicas else None

    cores = host_rps * (a.hit_us + (1 - hit) * a.miss_us) / 1e6
    return {
        "pages seen by a host": pages_per_host,
        "pages a worker's cache holds": held,
        "hit ratio": hit,
        "requests/s per host": host_rps,
        "misses/s per host": misses_per_worker * a.workers,
        "meta refreshes/s per host (TTL)": refresh_per_worker * a.workers,
        "meta refreshes/s in all (publishes)": publish_refresh,
        "Redis commands/s in all": redis_cmds,
        "Redis commands/s per primary": per_primary,
        "Redis commands/s per replica (read_from=replicas)": per_replica,
        "cores per host": cores,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rps", type=float, default=100_000, help="site requests per second")
    p.add_argument("--pages", type=int, default=1_000_000, help="distinct pages (URIs)")
    p.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent of page popularity")
    p.add_argument("--hosts", type=int, default=4, help="render hosts")
    p.add_argument("--workers", type=int, default=8, help="nginx workers per host")
    p.add_argument("--round-robin", action="store_true",
                   help="spread requests round robin instead of hashing the URI")
    p.add_argument("--cache-mb", type=float, default=64, help="dynpage_cache_size per worker, MiB")
    p.add_argument("--page-bytes", type=int, default=40_000,
                   help="worker-cache bytes per page (meta, parsed snapshot, template share)")
    p.add_argument("--ttl", type=float, default=1.0, help="dynpage_cache_ttl, seconds")
    p.add_argument("--publishes", type=float, default=5.0, help="page publishes per second")
    p.add_argument("--hit-us", type=float, default=26.0, help="CPU microseconds per hit")
    p.add_argument("--miss-us", type=float, default=200.0,
                   help="CPU microseconds a miss adds (preparation and render)")
    p.add_argument("--primaries", type=int, default=3, help="Redis primaries (1: no cluster)")
    p.add_argument("--replicas", type=int, default=1, help="replicas per primary")
    p.add_argument("--redis-ops", type=float, default=100_000,
                   help="commands/s one Redis node sustains (pipelined)")
    p.add_argument("--cores", type=float, default=16, help="cores per render host")
    a = p.parse_args(argv)
    if min(a.hosts, a.workers, a.pages, a.primaries) < 1 or a.zipf <= 0:
        p.error("hosts, workers, pages and primaries must be at least 1, zipf above 0")

    out = model(a)
    width = max(len(k) for k in out)
    for k, v in out.items():
        if v is None:
            shown = "-"
        elif k == "hit ratio":
            shown = f"{v:.4f}"
        elif isinstance(v, float):
            shown = f"{v:,.1f}"
        else:
            shown = f"{v:,}"
        print(f"{k:<{width}}  {shown}")
    problems = []
    node_load = out["Redis commands/s per replica (read_from=replicas)"] or out[
        "Redis commands/s per primary"]
    if node_load > a.redis_ops:
        problems.append(f"a Redis node gets {node_load:,.0f} commands/s, over {a.redis_ops:,.0f}: "
                        "add primaries, replicas, or cache (--cache-mb, --ttl)")
    if out["cores per host"] > a.cores:
        problems.append(f"a host needs {out['cores per host']:.1f} cores, over {a.cores:g}: "
                        "add hosts")
    for line in problems:
        print("over capacity: " + line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
