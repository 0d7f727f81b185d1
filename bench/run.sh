#!/usr/bin/env bash
# `make bench`: nginx serving the rendered product page as a static file (with and without
# open_file_cache) vs. the same page from dynpage: its kept output, rendered on every request
# (dynpage_output_cache off), and in dimension mode (one Redis key per top-level field of
# data.json), and the Lua path (../shared/bench/lua/run.sh), one worker, nginx on CPU 0, wrk on CPU 1. Bounded: DURATION seconds per run (default 10), CONNECTIONS (default 64).
# Then the hot page's p99 with a 1 s TTL, without and with dynpage_background_update, against
# 60 s; what counting for dynpage_status costs (the kept output with dynpage_counters on and off,
# alternately), the hot page's p99 during a flood of P events (bench/events.py: EVENT_ENTRIES cached
# entries, default 40,000; EVENTS messages, default 100,000, over EVENT_SECONDS, default 6) and
# publish-to-visible across two workers (bench/propagation.py, ROUNDS, default 200).
# (b) Compressed: nginx's gzip_static serving a pre-compressed .gz of the same page (gzip -6,
# dynpage_gzip_comp_level's default) vs. dynpage_gzip's kept gzip bytes, every request with
# Accept-Encoding: gzip.
# (c) The long tail (bench/longtail.sh: its header says what it runs).
# SECTIONS (default "kept gzip ttl counters events longtail propagation") runs only the parts
# named.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
duration=${DURATION:-10}
sections=" ${SECTIONS:-kept gzip ttl counters events longtail propagation} "
want() { [[ $sections == *" $1 "* ]]; }
conns=${CONNECTIONS:-64}
work=$(mktemp -d /tmp/dynpage-bench.XXXXXX)
redis_port=$("$root/scripts/free-port.sh")
http_port=$("$root/scripts/free-port.sh")
cleanup() {
  [ -f "$work/nginx.pid" ] && kill -QUIT "$(cat "$work/nginx.pid")" 2>/dev/null || true
  [ -f "$work/prop/nginx.pid" ] && kill -QUIT "$(cat "$work/prop/nginx.pid")" 2>/dev/null || true
  [ -f "$work/off/nginx.pid" ] && kill -QUIT "$(cat "$work/off/nginx.pid")" 2>/dev/null || true
  [ -f "$work/on/nginx.pid" ] && kill -QUIT "$(cat "$work/on/nginx.pid")" 2>/dev/null || true
  [ -f "$work/lua/nginx.pid" ] && kill -QUIT "$(cat "$work/lua/nginx.pid")" 2>/dev/null || true
  [ -f "$work/redis.pid" ] && kill "$(cat "$work/redis.pid")" 2>/dev/null || true
  sleep 0.3; rm -rf "$work"
}
trap cleanup EXIT
# (b) needs gzip_static in the vendored nginx (.cargo/config.toml). cargo does not always
# rebuild nginx when that file's NGX_CONFIGURE_ARGS changes: say how, rather than fail later.
"$root/build/sbin/nginx" -V 2>&1 | grep -q -- --with-http_gzip_static_module || {
  echo "build/sbin/nginx lacks gzip_static: rebuild it with" >&2
  echo "  cargo clean --release -p nginx-sys && make build" >&2
  exit 1
}
chmod 755 "$work"
mkdir -p "$work/html" "$work/logs"
python3 "$root/bench/gen.py" "$work/gen" >/dev/null
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --dir "$work" \
  --daemonize yes --pidfile "$work/redis.pid" --logfile "$work/redis.log"
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done
export DYNPAGE_REDIS=redis://127.0.0.1:$redis_port
ctl=$root/build/bin/dynpagectl
$ctl template put item "$work/gen/page.upon.html" >/dev/null
$ctl page put /item/1001.html --data "$work/gen/data.json" --template item >/dev/null
# Dimension mode: each top-level field of data.json under its own key, item:1001:<field>.
fields=$(python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))))' "$work/gen/data.json")
for f in $fields; do
  python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))[sys.argv[2]]))' \
    "$work/gen/data.json" "$f" > "$work/gen/dim-$f.json"
  $ctl data put "item:1001:$f" "$work/gen/dim-$f.json" >/dev/null
done
dims=""
for f in $fields; do dims+="dynpage_data $f item:\$1:$f required; "; done

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
    server {
        listen 127.0.0.1:$http_port backlog=4096;
        location /static/ { alias $work/html/; default_type text/html; }
        location /cached/ {
            alias $work/html/;
            default_type text/html;
            open_file_cache max=1000 inactive=60s;
            open_file_cache_valid 60s;
        }
        location /item/ { dynpage_page \$uri; dynpage_cache_ttl 60s; }
        location /gz/ { alias $work/html/; default_type text/html; gzip_static on; }
        location /gz-cached/ {
            alias $work/html/;
            default_type text/html;
            gzip_static on;
            open_file_cache max=1000 inactive=60s;
            open_file_cache_valid 60s;
        }
        location ~ ^/gzip(/item/\d+\.html)\$ { dynpage_page \$1; dynpage_cache_ttl 60s; dynpage_gzip on; }
        location /render/item/ {
            dynpage_page /item/\$arg_id.html;
            dynpage_cache_ttl 60s;
            dynpage_output_cache off;
        }
        location ~ ^/dim/item/(\d+)\.html\$ { dynpage_template item; $dims dynpage_cache_ttl 60s; }
        location /ttl1/ { dynpage_page /item/1001.html; dynpage_cache_ttl 1s; }
        location /ttl1-bg/ {
            dynpage_page /item/1001.html;
            dynpage_cache_ttl 1s;
            dynpage_background_update on;
        }
    }
}
EOC
"$root/build/sbin/nginx" -p "$work/" -c "$work/nginx.conf" -e "$work/logs/error.log"
sleep 0.3
curl -sf "http://127.0.0.1:$http_port/item/1001.html" -o "$work/html/page.html"
while IFS= read -r line; do
  grep -qF -- "$line" "$work/html/page.html" || { echo "rendered page lacks: $line" >&2; exit 1; }
done < "$work/gen/expected.txt"
echo "page: $(wc -c < "$work/html/page.html") bytes, every line of expected.txt present"
curl -sf "http://127.0.0.1:$http_port/dim/item/1001.html" -o "$work/dim.html"
cmp -s "$work/html/page.html" "$work/dim.html" \
  || { echo "dimension mode renders differently from page mode" >&2; exit 1; }
echo "dimension mode ($(wc -w <<<"$fields") keys): byte-identical to page mode"

gzip -6 -n -c "$work/html/page.html" > "$work/html/page.html.gz"
curl -sf -H 'Accept-Encoding: gzip' "http://127.0.0.1:$http_port/gzip/item/1001.html" -o "$work/dyn.gz"
gunzip -c "$work/dyn.gz" | cmp -s - "$work/html/page.html" \
  || { echo "dynpage_gzip's bytes do not gunzip to the page" >&2; exit 1; }
curl -sfI -H 'Accept-Encoding: gzip' "http://127.0.0.1:$http_port/gz/page.html" | grep -qi '^Content-Encoding: gzip' \
  || { echo "gzip_static does not serve page.html.gz" >&2; exit 1; }
echo "gzip: dynpage $(wc -c < "$work/dyn.gz") bytes, gzip -6 $(wc -c < "$work/html/page.html.gz") bytes; both gunzip to the page"

measure() { # name url [wrk args] -> "rps p99"
  local name=$1 url=$2; shift 2
  taskset -c 1 wrk -t1 -c"$conns" -d2s "$@" "$url" >/dev/null 2>&1 # warm-up
  local out; out=$(taskset -c 1 wrk -t1 -c"$conns" -d"${duration}s" --latency "$@" "$url")
  local rps p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  printf '%-28s %10s req/s   p99 %8s   non-2xx %s\n' "$name" "$rps" "$p99" "${non2xx:-0}" >&2
  echo "$p99" > "$work/last-p99"
  echo "$rps"
}
to_ms() { # wrk's latency ("812.00us", "1.20ms", "2.01s") in ms
  python3 -c "import re, sys; n, u = re.fullmatch(r'([0-9.]+)(us|ms|s)', sys.argv[1]).groups(); print(round(float(n) * {'us': 0.001, 'ms': 1, 's': 1000}[u], 3))" "$1"
}
if want kept; then
# The bar's pair, static with open_file_cache against dynpage's kept output, is measured in
# PAIRS (default 5) alternating rounds of PAIR_DURATION seconds (default 5): this VM's
# throughput drifts by ±20 % between runs, and a ratio taken within each pair, then the median,
# does not drift with it. The other rows are measured once.
pairs=${PAIRS:-5}
ratios=()
cached_runs=()
dyn_runs=()
for _ in $(seq "$pairs"); do
  c=$(duration=${PAIR_DURATION:-5} measure "static, open_file_cache" "http://127.0.0.1:$http_port/cached/page.html")
  d=$(duration=${PAIR_DURATION:-5} measure "dynpage kept output" "http://127.0.0.1:$http_port/item/1001.html")
  cached_runs+=("$c"); dyn_runs+=("$d")
  ratios+=("$(python3 -c "print($d / $c)")")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
cached=$(median "${cached_runs[@]}")
dyn=$(median "${dyn_runs[@]}")
kept_ratio=$(median "${ratios[@]}")
echo "kept output / static with open_file_cache, per pair: $(printf '%.2f ' "${ratios[@]}")-> median $(printf '%.2f' "$kept_ratio")"
static=$(measure "static file (nginx)" "http://127.0.0.1:$http_port/static/page.html")
render=$(measure "dynpage rendering each time" "http://127.0.0.1:$http_port/render/item/?id=1001")
dim=$(measure "dynpage dimension mode" "http://127.0.0.1:$http_port/dim/item/1001.html")
# The Lua path (../shared/bench/lua/run.sh: Debian's nginx with its Lua module, an lrucache hit
# and lua-resty-template rendering every request), its one worker on CPU 0 as well.
lua=0
shared=$(cd "$root/../shared/bench" 2>/dev/null && pwd) || shared=""
if [ -n "$shared" ] && [ -x /usr/sbin/nginx ]; then
  lua_port=$("$root/scripts/free-port.sh")
  mkdir -p "$work/lua"
  DIR=$work/lua PORT=$lua_port REDIS_PORT=$redis_port taskset -c 0 bash "$shared/lua/run.sh" >/dev/null
  lua=$(measure "Lua path (lrucache hit)" "http://127.0.0.1:$lua_port/lua/l1/item/1001.html")
  kill -QUIT "$(cat "$work/lua/nginx.pid")" 2>/dev/null || true
else
  echo "the Lua path: skipped (../shared/bench or /usr/sbin/nginx missing)" >&2
fi
python3 -c "print('ratio to static with open_file_cache (its median): kept output %.2f (median of the pairs), rendering each time %.2f, dimension mode %.2f, the Lua path %.2f, static without it %.2f' % ($kept_ratio, $render / $cached, $dim / $cached, $lua / $cached, $static / $cached))"
fi

# (b) Compressed, every request with Accept-Encoding: gzip.
if want gzip; then
gz=(-H 'Accept-Encoding: gzip')
gzcached=$(measure "gzip_static, open_file_cache" "http://127.0.0.1:$http_port/gz-cached/page.html" "${gz[@]}")
gzstatic=$(measure "gzip_static (nginx)" "http://127.0.0.1:$http_port/gz/page.html" "${gz[@]}")
gzdyn=$(measure "dynpage_gzip kept output" "http://127.0.0.1:$http_port/gzip/item/1001.html" "${gz[@]}")
python3 -c "print('gzip: dynpage_gzip to gzip_static %.2f (to gzip_static with open_file_cache %.2f)' % ($gzdyn / $gzstatic, $gzdyn / $gzcached))"
fi

# No request waits for a hot page's refresh: its p99 with dynpage_cache_ttl 1s (a fetch every
# second) against 60 s, without and with dynpage_background_update.
if want ttl; then
measure "kept output, ttl 60s" "http://127.0.0.1:$http_port/item/1001.html" >/dev/null
p99_60=$(to_ms "$(cat "$work/last-p99")")
measure "kept output, ttl 1s" "http://127.0.0.1:$http_port/ttl1/" >/dev/null
p99_1=$(to_ms "$(cat "$work/last-p99")")
measure "ttl 1s, background update" "http://127.0.0.1:$http_port/ttl1-bg/" >/dev/null
p99_bg=$(to_ms "$(cat "$work/last-p99")")
echo "hot page p99: ttl 60s ${p99_60} ms; ttl 1s ${p99_1} ms without background update, ${p99_bg} ms with it"
fi

# What counting for dynpage_status costs on the hot page: the kept output from a second nginx
# with `dynpage_counters off`, measured alternately with the first (counting, the default),
# COUNTER_ROUNDS pairs (default 6) of DURATION seconds each.
if want counters; then
# Two fresh instances with the same configuration but for `dynpage_counters` (the main one above
# has more locations, among them a regex one that every request is matched against).
start_counting() { # name on|off -> port
  local port dir=$work/$1
  port=$("$root/scripts/free-port.sh")
  mkdir -p "$dir/logs"
  cat > "$dir/nginx.conf" <<EOC
load_module $root/build/modules/ngx_http_dynpage_module.so;
worker_processes 1;
worker_cpu_affinity 0001;
error_log $dir/logs/error.log warn;
pid $dir/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    dynpage_redis redis://127.0.0.1:$redis_port/0;
    dynpage_counters $2;
    server {
        listen 127.0.0.1:$port backlog=4096;
        location /item/ { dynpage_page \$uri; dynpage_cache_ttl 60s; }
    }
}
EOC
  "$root/build/sbin/nginx" -p "$dir/" -c "$dir/nginx.conf" -e "$dir/logs/error.log"
  echo "$port"
}
on_port=$(start_counting on on)
off_port=$(start_counting off off)
sleep 0.3
# Alternating pairs, the median of their ratios: one pair's ratio moves by ±15 % on this VM.
ratios=""
for _ in $(seq "${COUNTER_ROUNDS:-6}"); do
  on=$(measure "kept output, counting" "http://127.0.0.1:$on_port/item/1001.html")
  off=$(measure "kept output, not counting" "http://127.0.0.1:$off_port/item/1001.html")
  ratios+="$on/$off "
done
kill -QUIT "$(cat "$work/on/nginx.pid")" "$(cat "$work/off/nginx.pid")" 2>/dev/null || true
# The same counter updates timed alone (a kept-output hit: 3 lookups, a transition, an output
# lookup, a request), against the time of one request at the rate just measured.
ns=$(cd "$root" && cargo run -q --release -p dynpage-core --example metrics_cost)
python3 -c "print('counting, timed alone: %s ns per hot-page request = %.2f%% of one request at %s req/s' % ('$ns', 100 * $ns * 1e-9 * $on, '$on'))"
python3 -c "
import statistics, sys
r = sorted(eval(x) for x in sys.argv[1:])
print('counting for dynpage_status costs %.1f%% of the hot page\'s req/s (the median of %d alternating pairs; pairs from %.1f%% to %.1f%%; bar: 2%%)' % (100 * (1 - statistics.median(r)), len(r), 100 * (1 - r[-1]), 100 * (1 - r[0])))
" $ratios
fi

# Events cost what they touch: the hot page's p99 while 100,000 P events messages reach the
# worker, which holds 40,000 cached entries (bench/events.py).
want events && python3 "$root/bench/events.py" "$http_port" "$redis_port" /item/1001.html "${EVENT_ENTRIES:-40000}" \
  "${EVENTS:-100000}" "${EVENT_SECONDS:-6}"

# (c) The long tail: 20,000 pages, Zipf s=1.0, at 64m and 2m, dynpage against the Lua path
# (bench/longtail.sh, also `make bench-longtail` alone), with its own Redis and nginx.
if want longtail; then
  if [ -d "$root/../shared/bench" ]; then
    "$root/bench/longtail.sh"
  else
    echo "the long tail: skipped (../shared/bench, with zipf.lua and the Lua path, is missing)" >&2
  fi
fi

# Publish-to-visible across two workers (P events; the cache TTL is 60 s, so nothing else can
# make a change visible).
want propagation || exit 0
prop_port=$("$root/scripts/free-port.sh")
mkdir -p "$work/prop/logs"
cat > "$work/prop/nginx.conf" <<EOC
load_module $root/build/modules/ngx_http_dynpage_module.so;
worker_processes 2;
error_log $work/prop/logs/error.log warn;
pid $work/prop/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    dynpage_redis redis://127.0.0.1:$redis_port/0;
    server {
        listen 127.0.0.1:$prop_port reuseport;
        location /prop/ { dynpage_page \$uri; dynpage_cache_ttl 60s; add_header X-Pid \$pid; }
    }
}
EOC
"$root/build/sbin/nginx" -p "$work/prop/" -c "$work/prop/nginx.conf" -e "$work/prop/logs/error.log"
sleep 0.3
python3 "$root/bench/propagation.py" "$prop_port" "$redis_port" "${ROUNDS:-200}"
