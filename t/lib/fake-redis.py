#!/usr/bin/env python3
"""A hostile Redis for t/016-hostile-redis.t.

    fake-redis.py <resp port> <control port>

It speaks just enough RESP2 to serve dynpage's reads, and misbehaves on request:

- every page `dynpage:page:<key>` exists with one version, 1000, whose snapshot renders
  "fake <key>" (/set adds version 2000 rendering the text given); keys starting with /missing
  do not exist;
- a command with an argument containing "drip" (a page key, or an AUTH password) is answered one
  byte every 50 ms; a page whose key contains "many" has 200 versions (1000 to 1199), so its
  field list dripped takes two minutes;
- version 1000 of a page whose key contains "huge" is said to be 20 bytes long (HSTRLEN), then
  answered (HGET) with a bulk string announcing 2^40 bytes, then as many zero bytes as the
  client takes, up to 64 MiB, then silence for 5 s;
- SUBSCRIBE is answered as Redis does, or with an integer (`/subscribe/int`).

The control port answers HTTP GETs (the test's nginx reaches it with proxy_pass):
/reset, /subscribe/<ok|int>, /set?key=<page key>&text=<template>,
/publish?channel=<c>&msg=<m> (to every subscriber of c), /stats
("subscribes=<n> huge_sent=<bytes> connections=<n>").
"""

import socket
import socketserver
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HUGE = 1 << 40
HUGE_CAP = 64 << 20

lock = threading.Lock()
state = {}
subscribers = []  # (channel, socket)


def reset():
    with lock:
        state.clear()
        state.update(subscribe="ok", subscribes=0, huge_sent=0, connections=0, text={})


reset()


def bulk(b):
    if b is None:
        return b"$-1\r\n"
    if isinstance(b, str):
        b = b.encode()
    return b"$%d\r\n%s\r\n" % (len(b), b)


def read_command(f):
    line = f.readline()
    if not line:
        return None
    if not line.startswith(b"*"):
        return [w for w in line.split()]  # inline command
    n = int(line[1:])
    args = []
    for _ in range(n):
        hdr = f.readline()
        size = int(hdr[1:])
        data = f.read(size + 2)
        args.append(data[:-2])
    return args


def page_key(redis_key):
    prefix = b"dynpage:page:"
    return redis_key[len(prefix):].decode(errors="replace") if redis_key.startswith(prefix) else None


def versions(key):
    with lock:
        return ["1000", "2000"] if key in state["text"] else ["1000"]


def snapshot(key, version):
    if "huge" in key:
        return "x" * 20
    text = "fake " + key
    if version == "2000":
        with lock:
            text = state["text"][key]
    return '{"template":"%s"}' % text


def answer(args):
    """The reply to one command: bytes, or a callable that writes it to the socket."""
    cmd = args[0].upper() if args else b""
    if cmd in (b"AUTH", b"SELECT"):
        return b"+OK\r\n"
    if cmd == b"PING":
        return b"+PONG\r\n"
    if cmd in (b"HKEYS", b"HLEN"):
        key = page_key(args[1])
        fields = [] if key is None or key.startswith("/missing") else versions(key)
        if key is not None and "many" in key:
            fields = [str(v) for v in range(1000, 1200)]
        if cmd == b"HLEN":
            return b":%d\r\n" % len(fields)
        return b"*%d\r\n" % len(fields) + b"".join(bulk(f) for f in fields)
    if cmd == b"HSTRLEN":
        key = page_key(args[1])
        if key is None or key.startswith("/missing") or args[2].decode() not in versions(key):
            return b":0\r\n"
        return b":%d\r\n" % len(snapshot(key, args[2].decode()))
    if cmd == b"HGET":
        key = page_key(args[1])
        if key is None or key.startswith("/missing") or args[2].decode() not in versions(key):
            return bulk(None)
        if "huge" in key:
            return stream_huge
        return bulk(snapshot(key, args[2].decode()))
    if cmd == b"STRLEN":
        return b":0\r\n"
    if cmd == b"GETRANGE":
        return bulk("")
    return b"-ERR unknown command\r\n"


def stream_huge(sock):
    sock.sendall(b"$%d\r\n" % HUGE)
    zeros = bytes(1 << 16)
    sent = 0
    try:
        while sent < HUGE_CAP:
            sock.sendall(zeros)
            sent += len(zeros)
            with lock:
                state["huge_sent"] += len(zeros)
        time.sleep(5)
    except OSError:
        pass
    raise ConnectionError("done")


def send(sock, reply, drip):
    if callable(reply):
        reply(sock)
    elif drip:
        for i in range(len(reply)):
            sock.sendall(reply[i:i + 1])
            time.sleep(0.05)
    else:
        sock.sendall(reply)


class Resp(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        with lock:
            state["connections"] += 1
        f = sock.makefile("rb")
        try:
            while True:
                args = read_command(f)
                if args is None:
                    return
                drip = any(b"drip" in a for a in args)
                if args and args[0].upper() == b"SUBSCRIBE":
                    with lock:
                        state["subscribes"] += 1
                        mode = state["subscribe"]
                    if mode == "int":
                        send(sock, b":1\r\n", drip)
                        continue
                    channel = args[1]
                    send(sock, b"*3\r\n" + bulk("subscribe") + bulk(channel) + b":1\r\n", drip)
                    with lock:
                        subscribers.append((channel, sock))
                    continue
                send(sock, answer(args), drip)
        except (OSError, ValueError, IndexError, ConnectionError):
            return
        finally:
            with lock:
                subscribers[:] = [s for s in subscribers if s[1] is not sock]


class Control(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        parts = url.path.strip("/").split("/")
        body = "unknown\n"
        if parts[0] == "reset":
            reset()
            body = "reset\n"
        elif parts[0] == "subscribe" and len(parts) == 2:
            with lock:
                state["subscribe"] = parts[1]
            body = "subscribe %s\n" % parts[1]
        elif parts[0] == "set":
            with lock:
                state["text"][q["key"]] = q["text"]
            body = "set\n"
        elif parts[0] == "publish":
            msg = b"*3\r\n" + bulk("message") + bulk(q["channel"]) + bulk(q["msg"])
            n = 0
            with lock:
                targets = [s for c, s in subscribers if c == q["channel"].encode()]
            for s in targets:
                try:
                    s.sendall(msg)
                    n += 1
                except OSError:
                    pass
            body = "published to %d\n" % n
        elif parts[0] == "stats":
            with lock:
                body = "subscribes=%d huge_sent=%d connections=%d\n" % (
                    state["subscribes"], state["huge_sent"], state["connections"])
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    port, ctl = int(sys.argv[1]), int(sys.argv[2])
    resp = Server(("127.0.0.1", port), Resp)
    control = ThreadingHTTPServer(("127.0.0.1", ctl), Control)
    control.daemon_threads = True
    threading.Thread(target=resp.serve_forever, daemon=True).start()
    control.serve_forever()


if __name__ == "__main__":
    main()
