#!/usr/bin/env python3
"""`make bench`, events section: a hot page's latency while `P events` floods a worker.

Usage: events.py HTTP_PORT REDIS_PORT HOT_PATH [ENTRIES] [EVENTS] [DURATION]

Against a running nginx (one worker, `location /item/ { dynpage_page $uri; }`, a 60 s cache TTL)
and its Redis (prefix `dynpage:`):
  1. fills the worker cache with ENTRIES (default 40,000) not-found pages /item/ev-<n>.html
     (each a cached entry of its own document, as a page that exists would be);
  2. measures the hot page with wrk (CPU 1) for DURATION seconds (default 5): p99 without events;
  3. measures it again while EVENTS (default 100,000) messages are published in 20 even
     batches over the run: half name a cached document (each drops its entry), half a key no
     entry has (must cost a hash lookup);
  4. checks that the hot page still answers 200 and that every message reached the subscriber.
It prints both p99s and the bar (p99 under 5 ms during the flood) and exits 1 if the run itself
failed (non-2xx, a message not delivered); missing the bar is reported, not an error.
"""

import http.client
import re
import socket
import subprocess
import sys
import threading
import time

BAR_MS = 5.0
PREFIX = "dynpage:"


def fill(port, entries, threads=4):
    """Asks for ENTRIES never-published pages over keep-alive connections; all must be 404."""
    bad = []

    def worker(start):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for n in range(start, entries, threads):
            conn.request("GET", "/item/ev-%d.html" % n)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 404:
                bad.append(resp.status)
        conn.close()

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if bad:
        sys.exit("events: %d fill requests were not 404 (first: %s)" % (len(bad), bad[0]))


def resp_command(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def read_integers(sock, count):
    """Reads COUNT integer replies (`:<n>\\r\\n`); returns their sum."""
    buf = b""
    total = 0
    got = 0
    while got < count:
        chunk = sock.recv(65536)
        if not chunk:
            sys.exit("events: redis closed the connection")
        buf += chunk
        lines = buf.split(b"\r\n")
        buf = lines.pop()
        for line in lines:
            if not line.startswith(b":"):
                sys.exit("events: unexpected reply %r" % line[:80])
            total += int(line[1:])
            got += 1
    return total


def publish(redis_port, events, entries, duration, result):
    """Publishes EVENTS messages in 20 batches spread over DURATION; stores deliveries."""
    sock = socket.create_connection(("127.0.0.1", redis_port))
    batches = 20
    per_batch = events // batches
    delivered = 0
    sent = 0
    start = time.monotonic()
    for b in range(batches):
        wait = start + b * duration / batches - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        payload = bytearray()
        for i in range(per_batch):
            n = sent + i
            if n % 2 == 0:
                key = "%spage:/item/ev-%d.html" % (PREFIX, (n // 2) % entries)
            else:
                key = "%sno-such-key:%d" % (PREFIX, n)
            payload += resp_command("PUBLISH", PREFIX + "events", key)
        sock.sendall(payload)
        delivered += read_integers(sock, per_batch)
        sent += per_batch
    sock.close()
    result["sent"] = sent
    result["delivered"] = delivered


def wrk(url, duration):
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", "-c16", "-d%ds" % duration, "--latency", url],
        check=True, capture_output=True, text=True).stdout
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if not p99 or not rps:
        sys.exit("events: cannot read wrk's output:\n" + out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return {
        "p99_ms": float(p99.group(1)) * scale,
        "rps": float(rps.group(1)),
        "bad": int(non2xx.group(1)) if non2xx else 0,
        "errors": errors.group(1) if errors else "",
    }


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    http_port, redis_port, hot = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    entries = int(sys.argv[4]) if len(sys.argv) > 4 else 40000
    events = int(sys.argv[5]) if len(sys.argv) > 5 else 100000
    duration = int(sys.argv[6]) if len(sys.argv) > 6 else 5
    url = "http://127.0.0.1:%d%s" % (http_port, hot)

    t0 = time.monotonic()
    fill(http_port, entries)
    fill_s = time.monotonic() - t0
    subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c16", "-d1s", url],
                   check=True, capture_output=True)
    quiet = wrk(url, duration)

    fill(http_port, entries)  # the entries a previous run's events dropped, cached again
    result = {}
    pub = threading.Thread(target=publish,
                           args=(redis_port, events, entries, duration - 1, result))
    pub.start()
    flooded = wrk(url, duration)
    pub.join()

    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
    conn.request("GET", hot)
    final = conn.getresponse()
    final.read()

    print("events: %d cached entries (filled in %.1f s), %d messages (%d delivered) in %d s"
          % (entries, fill_s, result.get("sent", 0), result.get("delivered", 0), duration - 1))
    print("  %-34s %10.0f req/s   p99 %7.2f ms" % ("hot page, no events", quiet["rps"],
                                                   quiet["p99_ms"]))
    print("  %-34s %10.0f req/s   p99 %7.2f ms" % ("hot page, during the flood", flooded["rps"],
                                                   flooded["p99_ms"]))
    verdict = "met" if flooded["p99_ms"] < BAR_MS else "MISSED"
    print("  bar: p99 under %.0f ms during the flood: %s" % (BAR_MS, verdict))
    failures = []
    if quiet["bad"] or flooded["bad"]:
        failures.append("non-2xx responses for the hot page")
    if result.get("delivered", 0) < result.get("sent", 1):
        failures.append("messages not delivered to a subscriber")
    if final.status != 200:
        failures.append("the hot page answers %d after the flood" % final.status)
    if failures:
        sys.exit("events: " + "; ".join(failures))


if __name__ == "__main__":
    main()
