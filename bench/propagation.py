#!/usr/bin/env python3
"""Publish-to-visible latency across nginx workers.

Usage: propagation.py <http port> <redis port> [rounds]

nginx must serve /prop/page with `dynpage_page $uri`, `dynpage_cache_ttl 60s` (so only P events
can make a change visible) and `add_header X-Pid $pid`, on a `reuseport` listener so that
connections spread over the workers. The script holds one keep-alive connection per worker,
then for each round writes a new version of the page and PUBLISHes it (as dynpagectl does),
and polls every worker until each serves the new version. Prints p50 / p99 / max in ms.
Bounded: `rounds` rounds (default 200), each given up after 2 s.
"""
import http.client
import socket
import sys
import time

PAGE = "/prop/page"


def resp_command(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Redis:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            self.buf += self.sock.recv(65536)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _reply(self):
        line = self._line()
        if line[:1] == b"-":
            raise RuntimeError(line.decode())
        if line[:1] == b"$":
            n = int(line[1:])
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.buf += self.sock.recv(65536)
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        return line[1:]

    def pipeline(self, *commands):
        self.sock.sendall(b"".join(resp_command(*c) for c in commands))
        return [self._reply() for _ in commands]


def get(conn):
    conn.request("GET", PAGE)
    r = conn.getresponse()
    body = r.read()
    return r.status, r.getheader("X-Pid"), body


def main():
    http_port, redis_port = int(sys.argv[1]), int(sys.argv[2])
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    redis = Redis(redis_port)
    key = "dynpage:page:" + PAGE
    version = int(time.time() * 1000) - 60_000
    redis.pipeline(("DEL", key), ("HSET", key, version, '{"template":"v0"}'),
                   ("PUBLISH", "dynpage:events", key))
    workers = {}
    for _ in range(200):
        c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
        status, pid, _ = get(c)
        if status == 200 and pid and pid not in workers:
            workers[pid] = c
        else:
            c.close()
        if len(workers) >= 2:
            break
    if len(workers) < 2:
        print("propagation: could not reach two workers", file=sys.stderr)
        sys.exit(1)
    latencies, lost = [], 0
    for i in range(1, rounds + 1):
        marker = "v%d" % i
        version += 1
        t0 = time.perf_counter()
        redis.pipeline(("HSET", key, version, '{"template":"%s"}' % marker),
                       ("PUBLISH", "dynpage:events", key))
        waiting = set(workers)
        while waiting and time.perf_counter() - t0 < 2.0:
            for pid in list(waiting):
                _, _, body = get(workers[pid])
                if body == marker.encode():
                    waiting.discard(pid)
        if waiting:
            lost += 1
        else:
            latencies.append((time.perf_counter() - t0) * 1000)
    latencies.sort()
    if not latencies:
        print("propagation: no round became visible", file=sys.stderr)
        sys.exit(1)

    def pct(p):
        return latencies[min(len(latencies) - 1, int(len(latencies) * p / 100))]

    print("publish-to-visible on all %d workers (%d rounds, cache TTL 60s): "
          "p50 %.2f ms  p99 %.2f ms  max %.2f ms  not visible within 2 s: %d"
          % (len(workers), rounds, pct(50), pct(99), latencies[-1], lost))
    sys.exit(1 if lost else 0)


if __name__ == "__main__":
    main()
