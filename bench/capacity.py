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

With --measure-skus N it first measures what a product costs in Redis: it starts a private
redis-server on a loopback port, stores N products of bench/gen.py's shape as dimension keys
(item:<id>:base, item:<id>:skus, item:<id>:desc, item:<id>:reviews; one shop:<id> per 100
products), reads INFO memory, and extrapolates the memory, primaries and replicas for
--skus (default 100 million) at --shard-gb usable per primary.

Every input is a flag; the defaults are the product-detail workload of the benchmark. Example:

    bench/capacity.py --rps 200000 --pages 2000000 --hosts 8 --workers 16
    bench/capacity.py --rps 200000 --pages 2000000 --hosts 8 --workers 16 --round-robin

It prints the hit ratio, the Redis commands per second (in all, per primary, per replica when
reads go to replicas) and the cores each host needs, and checks them against --redis-ops and
--cores. Measured inputs beat these defaults: run `make bench` on your hardware, and read
hits and misses from dynpage_status (`dynpage_cache_lookups_total`).
"""

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time


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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resp(*args):
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def measure_skus(n):
    """Bytes one product's dimension keys take in a real Redis (used_memory per product)."""
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, os.path.join(here, "gen.py"), d], check=True,
                       stdout=subprocess.DEVNULL)
        data = json.load(open(os.path.join(d, "data.json")))
        port = free_port()
        server = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port),
                                   "--save", "", "--appendonly", "no", "--dir", d],
                                  stdout=subprocess.DEVNULL)
        try:
            cli = ["redis-cli", "-p", str(port)]
            for _ in range(100):
                if subprocess.run(cli + ["ping"], capture_output=True).returncode == 0:
                    break
                time.sleep(0.05)

            def used():
                info = subprocess.run(cli + ["info", "memory"], capture_output=True,
                                      text=True).stdout
                return int(next(l.split(":")[1] for l in info.splitlines()
                                if l.startswith("used_memory:")))

            before = used()
            chunks = []
            for i in range(1, n + 1):
                product = dict(data["product"], id=i, title=f"Product {i}")
                base = json.dumps({"product": product, "breadcrumbs": data["breadcrumbs"]})
                chunks.append(resp("SET", f"item:{i}:base", base))
                chunks.append(resp("SET", f"item:{i}:skus", json.dumps(data["skus"])))
                chunks.append(resp("SET", f"item:{i}:desc", json.dumps(data["description_html"])))
                chunks.append(resp("SET", f"item:{i}:reviews", json.dumps(data["reviews"])))
                if i % 100 == 1:
                    chunks.append(resp("SET", f"shop:{i // 100}", json.dumps(data["shop"])))
            subprocess.run(cli + ["--pipe"], input=b"".join(chunks), check=True,
                           stdout=subprocess.DEVNULL)
            return (used() - before) / n
        finally:
            server.terminate()
            server.wait()


def print_memory(a, per_sku):
    total = per_sku * a.skus
    usable = a.shard_gb * 2**30
    primaries = max(1, math.ceil(total / usable))
    print(f"measured in Redis ({a.measure_skus:,} products)  {per_sku:,.0f} bytes per product "
          "(4 dimension keys, a shop per 100)")
    print(f"{a.skus:,} products                 {total / 2**30:,.0f} GiB")
    print(f"primaries at {a.shard_gb:g} GiB usable each      {primaries}")
    print(f"nodes with {a.replicas} replica(s) each        {primaries * (1 + a.replicas)}")
    print(f"memory in all (with replicas)     {total * (1 + a.replicas) / 2**30:,.0f} GiB")


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
    p.add_argument("--page-bytes", type=int, default=70_000,
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
    p.add_argument("--measure-skus", type=int, default=0,
                   help="first store this many products in a private Redis and measure them")
    p.add_argument("--skus", type=int, default=100_000_000,
                   help="products to size the Redis tier for (with --measure-skus)")
    p.add_argument("--shard-gb", type=float, default=25,
                   help="usable memory per Redis primary, GiB (with --measure-skus)")
    a = p.parse_args(argv)
    if a.measure_skus > 0:
        print_memory(a, measure_skus(a.measure_skus))
        print()
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
