#!/usr/bin/env bash
# Runs a command with a private redis-server on a free loopback port, then stops it.
# Exports TEST_NGINX_REDIS_PORT, TEST_NGINX_BINARY, TEST_NGINX_LOAD_MODULES, TEST_NGINX_SERVER_PORT
# (and TEST_NGINX_PORT, the real Test::Nginx's other name for it), and TEST_NGINX_SERVROOT: a
# private server root beside the redis-server's files, so that two runs at once (of either
# harness) never share t/servroot. Any of them already set is kept.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d /tmp/dynpage-redis.XXXXXX)
port=$("$root/scripts/free-port.sh")
redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --dir "$dir" \
  --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
stop() {
  local pid; pid=$(cat "$dir/redis.pid" 2>/dev/null || true)
  if [ -n "$pid" ]; then
    kill -CONT "$pid" 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
    # redis-server opens its log file for every line: wait until it has exited, or rm -rf
    # races with its last lines ("Directory not empty").
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  # Cleaning up never fails the run.
  rm -rf "$dir" 2>/dev/null || { sleep 0.5; rm -rf "$dir" 2>/dev/null || true; }
}
trap stop EXIT
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
export TEST_NGINX_REDIS_PORT=$port
export TEST_NGINX_BINARY=${TEST_NGINX_BINARY:-$root/build/sbin/nginx}
export TEST_NGINX_LOAD_MODULES=${TEST_NGINX_LOAD_MODULES:-$root/build/modules/ngx_http_dynpage_module.so}
export TEST_NGINX_SERVER_PORT=${TEST_NGINX_SERVER_PORT:-$("$root/scripts/free-port.sh")}
export TEST_NGINX_PORT=${TEST_NGINX_PORT:-$TEST_NGINX_SERVER_PORT}
export TEST_NGINX_SERVROOT=${TEST_NGINX_SERVROOT:-$dir/servroot}
export DYNPAGE_REDIS=redis://127.0.0.1:$port
"$@"
