#!/usr/bin/env bash
# `make bench-longtail`: the long tail. ZIPF_N pages (default 20,000) of the gen.py product
# template, each with its own data, requested with a Zipf distribution (s = ZIPF_S, default 1.0;
# ../shared/bench/zipf.lua) by wrk on CPU 1 against one worker on CPU 0, for DURATION seconds
# (default 20) with CONNECTIONS (default 64). For each bound in SIZES (default "64m 2m"):
#   dynpage with dynpage_cache_size and dynpage_output_cache_size both at the bound, then the Lua
#   path (../shared/bench/lua/run.sh: Debian's nginx, lrucache sized in items to hold as many pages
#   as dynpage held outputs of at that bound, one Redis round trip per miss) on the same pages.
# Each bound is also run with `dynpage_fetch_threads` THREADS_TOO (default 4; empty: not).
# Prints req/s, p99, Redis commands per request (INFO commandstats: dynpage's read script counts
# with the commands it runs), Redis round trips per cold page (dynpage: pipelines sent, from
# dynpage_status, over the requests that waited for Redis; the Lua path: one GET per miss) and
# the worker's private memory growth (RssAnon) over an idle worker, against the bounds, at the
# end of the load and once idle for 2 s.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shared=$(cd "$root/../shared/bench" 2>/dev/null && pwd) || { echo "../shared/bench is missing" >&2; exit 2; }
pages=${ZIPF_N:-20000}
duration=${DURATION:-20}
conns=${CONNECTIONS:-64}
sizes=${SIZES:-64m 2m}
work=$(mktemp -d /tmp/dynpage-longtail.XXXXXX)
redis_port=$("$root/scripts/free-port.sh")
http_port=$("$root/scripts/free-port.sh")
lua_port=$("$root/scripts/free-port.sh")
cleanup() {
  [ -f "$work/nginx.pid" ] && kill -QUIT "$(cat "$work/nginx.pid")" 2>/dev/null || true
  [ -f "$work/lua/nginx.pid" ] && kill -QUIT "$(cat "$work/lua/nginx.pid")" 2>/dev/null || true
  [ -f "$work/redis.pid" ] && kill "$(cat "$work/redis.pid")" 2>/dev/null || true
  sleep 0.3; rm -rf "$work"
}
trap cleanup EXIT
chmod 755 "$work"
mkdir -p "$work/logs"
python3 "$shared/gen.py" "$work/gen" >/dev/null
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --dir "$work" \
  --daemonize yes --pidfile "$work/redis.pid" --logfile "$work/redis.log"
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done
rcli() { redis-cli -p "$redis_port" "$@"; }

# Both layouts, written through redis-cli --pipe: dynpage's (a template document `item` and one
# page document per page naming it) and the Lua path's (page:<uri> -> {"template": src, "data"}).
python3 - "$work/gen" "$pages" <<'PY' | rcli --pipe >/dev/null
import json, sys
d, n = sys.argv[1], int(sys.argv[2])
upon = open(f"{d}/page.upon.html").read()
lua = open(f"{d}/page.lua.html").read()
data = json.load(open(f"{d}/data.json"))
out = sys.stdout.buffer
def cmd(*args):
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    out.write(b"*%d\r\n" % len(parts))
    for p in parts:
        out.write(b"$%d\r\n%s\r\n" % (len(p), p))
version = 1763720000000
cmd("HSET", "dynpage:tpl:item", version, upon)
for i in range(1, n + 1):
    data["product"]["id"] = i
    data["product"]["title"] = f"Product {i} <Pro>"
    body = json.dumps(data, ensure_ascii=False)
    cmd("HSET", f"dynpage:page:/p/{i}.html", version,
        '{"template":{"name":"item"},"data":' + body + "}")
    cmd("HSET", f"page:/p/{i}.html", version,
        json.dumps({"template": lua, "data": data}, ensure_ascii=False))
PY
echo "seeded $pages pages in both layouts; redis: $(rcli info memory | awk -F: '/^used_memory_human/ {print $2}' | tr -d '\r')"

# The worker's private memory (RssAnon): what the caches' bounds bound. The shared zone
# (dynpage_zone_size, 32m by default, shared by all workers: the stale outputs) is counted apart
# (RssShmem), as is the Lua path's.
rss_kb() { awk '/^RssAnon/ {print $2}' "/proc/$1/status"; }
shm_kb() { awk '/^RssShmem/ {print $2}' "/proc/$1/status"; }
worker_of() { pgrep -P "$(cat "$1")" | head -1; }
commands() { rcli info commandstats | awk -F'[=,]' '/^cmdstat_/ && !/cmdstat_(info|config|ping)/ {n += $2} END {print n + 0}'; }

run_wrk() { # prefix -> "rps p99 requests"
  ZIPF_N=$pages ZIPF_S=${ZIPF_S:-1.0} ZIPF_PREFIX=$1 taskset -c 1 wrk -t1 -c"$conns" -d3s \
    -s "$shared/zipf.lua" "http://127.0.0.1:$2" >/dev/null 2>&1
  rcli config resetstat >/dev/null
  local out
  out=$(ZIPF_N=$pages ZIPF_S=${ZIPF_S:-1.0} ZIPF_PREFIX=$1 taskset -c 1 wrk -t1 -c"$conns" \
    -d"${duration}s" --latency -s "$shared/zipf.lua" "http://127.0.0.1:$2")
  local non2xx
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  [ -z "$non2xx" ] || { echo "$1: $non2xx non-2xx responses" >&2; exit 1; }
  echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(awk '$1=="99%" {print $2}' <<<"$out") $(awk '/requests in/ {print $1}' <<<"$out")"
}

# Stops the nginx whose master's pid is in $1 and waits (up to 10 s) until it is gone: the next
# run starts on the same port and pid file.
stop_nginx() {
  local master
  master=$(cat "$1")
  kill -QUIT "$master"
  for _ in $(seq 100); do kill -0 "$master" 2>/dev/null || break; sleep 0.1; done
}

printf '%-8s %-10s %10s %10s %10s %10s %12s %s\n' bound path req/s p99 "redis/req" "RT/cold" "RSS growth" "(bound)" > "$work/table"
# dynpage at bound $1, with `dynpage_fetch_threads $2` if given (else the default): one row of
# the table; the default run sets `held` (kept outputs) for the Lua path's lrucache.
run_dynpage() {
  local size=$1 threads=$2 label=dynpage
  [ -z "$threads" ] || label="dynpage/$threads"
  cat > "$work/nginx.conf" <<EOC
load_module $root/build/modules/ngx_http_dynpage_module.so;
worker_processes 1;
worker_cpu_affinity 0001;
error_log $work/logs/error.log warn;
pid $work/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    dynpage_redis redis://127.0.0.1:$redis_port/0;
    dynpage_cache_size $size;
    dynpage_output_cache_size $size;
    ${threads:+dynpage_fetch_threads $threads;}
    server {
        listen 127.0.0.1:$http_port backlog=4096;
        location /p/ { dynpage_page \$uri; dynpage_cache_ttl 60s; }
        location = /status { dynpage_status; }
    }
}
EOC
  "$root/build/sbin/nginx" -p "$work/" -c "$work/nginx.conf" -e "$work/logs/error.log"
  sleep 0.3
  curl -sf "http://127.0.0.1:$http_port/p/1.html" -o /dev/null
  local idle rps p99 reqs calls rss rss_later shm status per_cold bound_kb kept
  idle=$(rss_kb "$(worker_of "$work/nginx.pid")")
  read -r rps p99 reqs <<<"$(run_wrk /p/ "$http_port")"
  calls=$(commands)
  rss=$(rss_kb "$(worker_of "$work/nginx.pid")")
  # And once idle for 2 s: what the caches let go of during the load goes back to the system
  # within a second (dynpage_core::memory_release).
  sleep 2
  rss_later=$(rss_kb "$(worker_of "$work/nginx.pid")")
  shm=$(shm_kb "$(worker_of "$work/nginx.pid")")
  status=$(curl -sf "http://127.0.0.1:$http_port/status")
  # Pages dynpage held servable without Redis: its kept outputs (their snapshots are kept
  # hollow beside them, see dynpage_output_cache in the README).
  kept=$(python3 -c 'import json,sys; s = json.loads(sys.argv[1]); print(max(1, s["outputs"]["entries"]))' "$status")
  [ -n "$threads" ] || held=$kept
  per_cold=$(python3 -c 'import json,sys; s = json.loads(sys.argv[1]); print("%.2f" % (s["sources"][0]["round_trips"] / max(1, s["requests"]["by_source"]["redis"])))' "$status")
  bound_kb=$(python3 -c 'import json,sys; s = json.loads(sys.argv[1]); print((s["cache"]["bound"] + s["outputs"]["bound"]) // 1024)' "$status")
  printf '%-8s %-10s %10s %10s %10s %10s %12s %s\n' "$size" "$label" "$rps" "$p99" \
    "$(python3 -c "print('%.2f' % ($calls / $reqs))")" "$per_cold" "$(( (rss - idle) / 1024 )) MB" \
    "($(( bound_kb / 1024 )) MB: inputs + outputs; $(python3 -c "print('%.2f' % (($rss - $idle) / $bound_kb))")x; $(python3 -c "print('%.2f' % (($rss_later - $idle) / $bound_kb))")x 2 s later; ~$kept pages held; zone $(( shm / 1024 )) MB shared)" >> "$work/table"
  stop_nginx "$work/nginx.pid"
}

for size in $sizes; do
  run_dynpage "$size" ""
  # With more fetch threads (THREADS_TOO, default 4; empty for none): more misses in flight,
  # which a Redis a network hop away needs, for more memory (see dynpage_fetch_threads in the
  # README).
  for threads in ${THREADS_TOO-4}; do run_dynpage "$size" "$threads"; done

  # The Lua path: lrucache holding as many pages as dynpage held at this bound.
  mkdir -p "$work/lua"
  DIR=$work/lua PORT=$lua_port REDIS_PORT=$redis_port DYNBENCH_L1_ITEMS=$held \
    taskset -c 0 bash "$shared/lua/run.sh" >/dev/null
  curl -sf "http://127.0.0.1:$lua_port/lua/l1/p/1.html" -o /dev/null
  idle=$(rss_kb "$(worker_of "$work/lua/nginx.pid")")
  read -r rps p99 reqs <<<"$(run_wrk /lua/l1/p/ "$lua_port")"
  calls=$(commands)
  rss=$(rss_kb "$(worker_of "$work/lua/nginx.pid")")
  sleep 2
  rss_later=$(rss_kb "$(worker_of "$work/lua/nginx.pid")")
  printf '%-8s %-10s %10s %10s %10s %10s %12s %s\n' "$size" lua "$rps" "$p99" \
    "$(python3 -c "print('%.2f' % ($calls / $reqs))")" "1.00" "$(( (rss - idle) / 1024 )) MB" "($(( (rss_later - idle) / 1024 )) MB 2 s later; lrucache: $held pages)" >> "$work/table"
  stop_nginx "$work/lua/nginx.pid"; rm -f "$work/lua/nginx.pid"
done
echo "long tail: $pages pages, Zipf s=${ZIPF_S:-1.0}, ${duration}s each, $conns connections"
cat "$work/table"
