#!/usr/bin/env bash
# `make stop`: stops what `make run` started.
root=$(cd "$(dirname "$0")/.." && pwd)
run=$root/run
if [ -f "$run/nginx.pid" ]; then
  "$root/build/sbin/nginx" -p "$run/" -c "$run/nginx.conf" -e "$run/logs/error.log" -s quit 2>/dev/null || kill "$(cat "$run/nginx.pid")" 2>/dev/null
fi
if [ -f "$run/redis.pid" ]; then kill "$(cat "$run/redis.pid")" 2>/dev/null; fi
for _ in $(seq 50); do [ -f "$run/nginx.pid" ] || [ -f "$run/redis.pid" ] || break; sleep 0.1; done
echo "stopped"
