#!/usr/bin/env bash
# Resilience soak (issue 4): nginx + dynpage serve the product page of bench/gen.py to wrk for
# DURATION seconds (default 60) while their Redis sources are killed (SIGKILL) and restarted:
# the local replica twice, the primary once; the two are never down together. nginx is
# reloaded (SIGHUP) every RELOAD_EVERY seconds (default 10; 0: never), so new workers start
# while a Redis may be down and must serve the page from the stale zone. Then it reports the
# responses per status, socket errors, the error log (source-down lines are expected, anything
# else above warn is not) and RSS before and after, and exits 1 unless:
#   - every wrk response is a 2xx and wrk saw no socket error or timeout,
#   - the error log has no line above warn other than the expected source-down lines,
#   - RSS did not grow by 10 % or more: without reloads each worker's and their sum; with
#     reloads the master's and the sum of the master and its current workers (the workers are
#     new ones, warmed the same way as the first),
#   - nginx recovered by itself: the same workers (without reloads) or every old worker gone
#     (with them), both Redis back with the page, the replica asked again by nginx after its last
#     restart, the page answering 200 at the end.
# A miss probe also asks for a never-seen page key every second: with one Redis always up it
# should always get 404; a 503 means nginx had no source although one was running. Such 503s,
# and source-down lines naming a Redis while it was running, are reported; STRICT=1 makes them
# failures too.
# Environment: DURATION (s, default 60, at least 10), CONNECTIONS (default 8), THREADS (wrk
# threads, default 1), WARMUP (s, default 3), RELOAD_EVERY (s, default 10, 0 for none), STRICT=1,
# KEEP=1 (keep the work directory).
# Everything listens on 127.0.0.1; every process started here is stopped on exit, even on Ctrl-C.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
duration=${DURATION:-60}
conns=${CONNECTIONS:-8}
threads=${THREADS:-1}
warmup=${WARMUP:-3}
reload_every=${RELOAD_EVERY:-10}
strict=${STRICT:-0}
max_growth_pct=10
page=/item/1001.html
prefix=dynpage:
ctl=$root/build/bin/dynpagectl
nginx=$root/build/sbin/nginx
module=$root/build/modules/ngx_http_dynpage_module.so

for f in "$ctl" "$nginx" "$module"; do
  [ -e "$f" ] || { echo "soak: $f is missing; run \`make build\` first" >&2; exit 2; }
done
for c in redis-server redis-cli wrk python3 curl ps pkill; do
  command -v "$c" >/dev/null || { echo "soak: $c not found; run \`make deps\`" >&2; exit 2; }
done
if ! [[ $duration =~ ^[0-9]+$ ]] || ((duration < 10)); then
  echo "soak: DURATION must be a number of seconds, at least 10" >&2
  exit 2
fi
if ! [[ $reload_every =~ ^[0-9]+$ ]]; then
  echo "soak: RELOAD_EVERY must be a number of seconds (0: no reload)" >&2
  exit 2
fi

work=$(mktemp -d /tmp/dynpage-soak.XXXXXX)
chmod 755 "$work" # nginx workers (nobody, when run as root) write into it
mkdir -p "$work/logs" "$work/primary" "$work/replica"
bg_pids=() # the chaos schedule, the miss probe and the reloads

# --- Cleanup: stop exactly what this script started (by pid), on any exit ---------------------
is_ours() { # pid name-fragment: the pid is alive (not a zombie) and runs the expected program
  [ -n "$1" ] && [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q -- "$2"
}
stop_background() {
  local pid
  for pid in "${bg_pids[@]}"; do
    pkill -TERM -P "$pid" 2>/dev/null || true # its sleep / curl / redis-cli child
    kill -TERM "$pid" 2>/dev/null || true
  done
  bg_pids=()
}
cleanup() {
  local rc=$? pid name
  trap - EXIT INT TERM
  stop_background
  pid=$(cat "$work/nginx.pid" 2>/dev/null || true)
  if is_ours "$pid" "nginx: master"; then
    kill -QUIT "$pid" 2>/dev/null || true
    for _ in $(seq 50); do is_ours "$pid" nginx || break; sleep 0.1; done
    if is_ours "$pid" nginx; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  for name in primary replica; do
    pid=$(cat "$work/$name.pid" 2>/dev/null || true)
    if is_ours "$pid" redis-server; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  sleep 0.3
  if [ "${KEEP:-0}" = 1 ]; then echo "soak: work directory kept: $work" >&2; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '[soak %s] %s\n' "$(date +%T)" "$*" >&2; }
now() { date +%s.%N; }

# --- Ports: free loopback ports, never the test suite's 1984-1990 -----------------------------
free_port() {
  local p
  while :; do
    p=$("$root/scripts/free-port.sh")
    if ((p < 1984 || p > 1990)); then echo "$p"; return; fi
  done
}
primary_port=$(free_port)
replica_port=$(free_port)
http_port=$(free_port)

# --- Redis: a primary and a real replica of it, both persisting to an AOF ---------------------
# appendfsync always: a SIGKILLed server restarts with everything it acknowledged; the replica
# then resyncs from the primary (partially, or fully after the primary restarted).
port_of() { if [ "$1" = primary ]; then echo "$primary_port"; else echo "$replica_port"; fi; }
rcli() { local name=$1; shift; redis-cli -h 127.0.0.1 -p "$(port_of "$name")" "$@"; }
start_redis() { # name: starts it and waits until it answers PING (not LOADING)
  local name=$1
  local args=(--bind 127.0.0.1 --port "$(port_of "$name")" --dir "$work/$name" --save ''
    --appendonly yes --appendfsync always --repl-diskless-sync-delay 0 --daemonize yes
    --pidfile "$work/$name.pid" --logfile "$work/$name.log")
  [ "$name" = primary ] || args+=(--replicaof 127.0.0.1 "$primary_port")
  redis-server "${args[@]}"
  for _ in $(seq 200); do
    [ "$(rcli "$name" ping 2>/dev/null)" = PONG ] && return 0
    sleep 0.05
  done
  echo "soak: redis $name did not start (see $work/$name.log)" >&2
  return 1
}
kill_redis() { # name: SIGKILL, as a crash would; prints the pid
  local name=$1 pid
  pid=$(cat "$work/$name.pid" 2>/dev/null || true)
  is_ours "$pid" redis-server || { echo "soak: $name is not running" >&2; return 1; }
  rm -f "$work/$name.pid" # the pid is dead from here on: never signal it again
  kill -KILL "$pid"
  for _ in $(seq 100); do is_ours "$pid" redis-server || break; sleep 0.01; done
  echo "$pid"
}
# A digest of the documents the page needs (its page and template hashes) on one server.
digest() { # name
  local name=$1 k
  for k in "${prefix}page:$page" "${prefix}tpl:item"; do
    echo "$k"; rcli "$name" --raw HGETALL "$k" 2>/dev/null | sort
  done | md5sum | cut -d' ' -f1
}
has_page() { # name: the server holds the seeded documents (the replica: and its link is up)
  local name=$1
  [ "$(digest "$name")" = "$seed_digest" ] || return 1
  [ "$name" = primary ] || rcli replica INFO replication | grep -q '^master_link_status:up'
}
wait_page() { # name timeout-s
  local i
  for ((i = 0; i < $2 * 20; i++)); do has_page "$1" && return 0; sleep 0.05; done
  return 1
}

log "redis primary on :$primary_port, replica on :$replica_port, nginx on :$http_port"
start_redis primary
start_redis replica

# --- Seed: the product page of bench/gen.py (a copy of ../shared/bench/gen.py), through ------
# dynpagectl against the primary, as `make bench` does; then wait until the replica has it.
python3 "$root/bench/gen.py" "$work/gen" >/dev/null
export DYNPAGE_REDIS=redis://127.0.0.1:$primary_port
"$ctl" template put item "$work/gen/page.upon.html" >/dev/null
"$ctl" page put "$page" --data "$work/gen/data.json" --template item >/dev/null
seed_digest=$(digest primary)
[ "$(rcli primary --raw HLEN "${prefix}page:$page")" -ge 1 ] || { echo "soak: seeding failed" >&2; exit 1; }
wait_page replica 10 || { echo "soak: the replica did not get the page" >&2; exit 1; }
log "page seeded on the primary and present on the replica"

# --- nginx: two workers, the chain replica -> primary, stale serving for 10 minutes -----------
cat >"$work/nginx.conf" <<EOC
load_module $module;
worker_processes 2;
error_log $work/logs/error.log warn;
pid $work/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    dynpage_redis redis://127.0.0.1:$replica_port/0;
    dynpage_redis redis://127.0.0.1:$primary_port/0;
    dynpage_redis_timeout 100ms;
    dynpage_stale_ttl 10m;
    dynpage_cache_ttl 1s;
    dynpage_debug_header on;
    server {
        listen 127.0.0.1:$http_port reuseport;
        location /item/ { dynpage_page \$uri; add_header X-Worker \$pid; }
    }
}
EOC
"$nginx" -p "$work/" -c "$work/nginx.conf" -e "$work/logs/error.log"
for _ in $(seq 100); do [ -s "$work/nginx.pid" ] && break; sleep 0.05; done
master=$(cat "$work/nginx.pid")
url=http://127.0.0.1:$http_port$page

# --- Warm-up: the page renders completely, then a short wrk run warms both workers -----------
for _ in $(seq 50); do curl -sf -o "$work/page.html" "$url" && break; sleep 0.1; done
while IFS= read -r line; do
  grep -qF -- "$line" "$work/page.html" || { echo "soak: rendered page lacks: $line" >&2; exit 1; }
done <"$work/gen/expected.txt"
wrk -t"$threads" -c"$conns" -d"${warmup}s" "$url" >/dev/null 2>&1
# The master's worker processes (not its cache helpers; none here) and, among them, the ones a
# reload told to shut down (their title says so).
workers_of() { ps --ppid "$master" -o pid= | tr -d ' ' | sort -n; }
old_workers() { ps --ppid "$master" -o pid=,args= | grep -c 'shutting down' || true; }
wait_old_gone() { # waits up to 10 s for the workers a reload retired; prints how many are left
  local left=0
  for _ in $(seq 100); do
    left=$(old_workers)
    [ "$left" -eq 0 ] && break
    sleep 0.1
  done
  echo "$left"
}
if ((reload_every > 0)); then
  # A master's RSS grows once at its first reload (the second cycle's memory) and is flat after
  # (plain nginx does the same: 2.3 -> 3.4 MB, then flat over 40 reloads); the baseline is taken
  # after one reload, so growth measured against it is growth per reload.
  kill -HUP "$master"
  sleep 0.5
  [ "$(wait_old_gone)" -eq 0 ] || { echo "soak: old workers did not exit after a reload" >&2; exit 1; }
  wrk -t"$threads" -c"$conns" -d"${warmup}s" "$url" >/dev/null 2>&1
fi
mapfile -t workers < <(workers_of)
[ "${#workers[@]}" -eq 2 ] || { echo "soak: expected 2 workers, found ${workers[*]}" >&2; exit 1; }
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
declare -A rss_before rss_after
for w in "${workers[@]}"; do rss_before[$w]=$(rss "$w"); done
master_rss_before=$(rss "$master")
log "page renders ($(wc -c <"$work/page.html") bytes); workers ${workers[*]} warmed"

# --- The wrk script: exact counts per status, per X-Dynpage source and per worker ------------
cat >"$work/count.lua" <<'EOL'
-- Each wrk thread counts its responses in a flat table ("status 200", "source l1",
-- "worker 1234"); done() (in wrk's main Lua state) adds up the threads' tables.
local threads = {}
counts = {}
function setup(thread) table.insert(threads, thread) end
local function bump(k) counts[k] = (counts[k] or 0) + 1 end
function response(status, headers, body)
  bump("status " .. status)
  local x = headers["X-Dynpage"]
  bump("source " .. (x and x:match("source=(%w+)") or "none"))
  bump("worker " .. (headers["X-Worker"] or "none"))
end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts")) do total[k] = (total[k] or 0) + v end
  end
  local e = summary.errors
  io.write(string.format("soak requests %d\nsoak duration_us %d\n", summary.requests, summary.duration))
  io.write(string.format("soak errors %d %d %d %d\n", e.connect, e.read, e.write, e.timeout))
  io.write(string.format("soak latency %d %d %d\n",
    latency:percentile(50), latency:percentile(99), latency.max))
  for k, v in pairs(total) do io.write(string.format("soak %s %d\n", k, v)) end
end
EOL

# --- Chaos: kills and restarts spread over the run, in the background -------------------------
# Fractions of DURATION: replica down 10-20 %, primary down 35-45 %, replica down again 60-70 %
# (after the primary's restart, so the chain needs the restarted primary); the last 30 % shows
# the recovery. Each restart waits until the server holds the page again. outages.log gets
# "<name> <epoch killed> <epoch holding the page again>" per outage.
t0=$(now)
elapsed() { awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%5.1fs", b - a }'; }
at() { # fraction: sleeps until that fraction of the run
  sleep "$(awk -v a="$t0" -v b="$(now)" -v f="$1" -v d="$duration" \
    'BEGIN { s = a + f * d - b; printf "%.3f", (s > 0 ? s : 0) }')"
}
chaos() {
  local step frac action name pid killed_at=
  for step in 0.10:kill:replica 0.20:start:replica 0.35:kill:primary 0.45:start:primary \
    0.60:kill:replica 0.70:start:replica; do
    IFS=: read -r frac action name <<<"$step"
    at "$frac"
    if [ "$action" = kill ]; then
      killed_at=$(now)
      if pid=$(kill_redis "$name"); then
        echo "$(elapsed) kill -9 $name (pid $pid)"
      else
        echo "$(elapsed) FAILED to kill $name"
      fi
    elif start_redis "$name" && wait_page "$name" 20; then
      echo "$name $killed_at $(now)" >>"$work/outages.log"
      echo "$(elapsed) $name restarted (pid $(cat "$work/$name.pid")), holds the page again"
    else
      echo "$name $killed_at $(now)" >>"$work/outages.log"
      echo "$(elapsed) FAILED: $name not back with the page"
    fi
  done
}
: >"$work/outages.log"
chaos >"$work/chaos.log" 2>&1 &
bg_pids+=($!)

# --- Miss probe: a never-seen page key every second; "<epoch> <status>" per request -----------
# Slow on purpose: a miss goes replica -> primary, so it also exercises the fetch threads'
# connections to the primary; a busy probe would hide what the cached-page traffic alone sees.
probe() {
  local i=0
  while :; do
    echo "$(now) $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
      "http://127.0.0.1:$http_port/item/probe-$i.html" || true)"
    i=$((i + 1))
    sleep 1
  done
}
probe >"$work/probe.log" 2>/dev/null &
bg_pids+=($!)

# --- Reloads: SIGHUP to the master every RELOAD_EVERY seconds; "<epoch>" per reload ----------
reloads() {
  while sleep "$reload_every"; do
    kill -HUP "$master" && now
  done
}
: >"$work/reloads.log"
if ((reload_every > 0)); then
  reloads >"$work/reloads.log" 2>/dev/null &
  bg_pids+=($!)
fi

# --- Load: wrk for DURATION seconds against the cached page ----------------------------------
reload_note=$( ((reload_every > 0)) && echo ", a reload every ${reload_every}s" || echo ", no reload")
log "wrk -t$threads -c$conns -d${duration}s $url (replica killed twice, primary once$reload_note)"
wrk -t"$threads" -c"$conns" -d"${duration}s" --timeout 2s -s "$work/count.lua" "$url" \
  >"$work/wrk.out" 2>&1 || { cat "$work/wrk.out" >&2; exit 1; }
wait "${bg_pids[0]}" || true # the chaos schedule ends by 70 %
stop_background

# --- Results: wrk's counts --------------------------------------------------------------------
sleep 1.5 # the last skip of a source (1 s) ends; nginx asks the replica again
reload_count=$(wc -l <"$work/reloads.log")
old_left=0
if ((reload_count > 0)); then
  # Every worker a reload retired exits once its connections close (wrk has stopped); then the
  # current workers get the same warm-up as the first ones before their RSS is read.
  old_left=$(wait_old_gone)
  wrk -t"$threads" -c"$conns" -d"${warmup}s" "$url" >/dev/null 2>&1
fi
mapfile -t workers_now < <(workers_of)
for w in "${workers_now[@]}"; do rss_after[$w]=$(rss "$w"); done
master_rss_after=$(rss "$master")
final_code=$(curl -s -o /dev/null -w '%{http_code}' "$url" || true)

field() { awk -v k="$1" '$1 == "soak" && $2 == k { $1 = ""; $2 = ""; sub(/^ +/, ""); print }' "$work/wrk.out"; }
counts_of() { awk -v k="$1" '$1 == "soak" && $2 == k { printf "%s%s=%s", s, $3, $4; s = ", " }' "$work/wrk.out"; }
requests=$(field requests)
duration_us=$(field duration_us)
read -r e_connect e_read e_write e_timeout <<<"$(field errors)"
read -r lat_p50 lat_p99 lat_max <<<"$(field latency)"
socket_errors=$((e_connect + e_read + e_write + e_timeout))
# A reload makes the retiring workers close their idle keepalive connections; a client that
# wrote its next request just then reads EOF (wrk: a read error; it does not retry). nginx
# serving a static file gets the same (38 read errors over 7 reloads, wrk -c8, here), so with
# reloads, read errors up to one per connection per reload are reported, not failures.
read_allowed=$((reload_count * conns))
counted_errors=$((socket_errors - (e_read < read_allowed ? e_read : read_allowed)))
non2xx=$(awk '$1 == "soak" && $2 == "status" && ($3 < 200 || $3 > 299) { n += $4 } END { print n + 0 }' "$work/wrk.out")
probes=$(wc -l <"$work/probe.log")
probe_bad=$(awk '$2 != 404' "$work/probe.log" | wc -l)
probe_codes=$(awk '{ n[$2]++ } END { for (c in n) { printf "%s%s=%d", s, c, n[c]; s = ", " } }' "$work/probe.log")
probe_bad_at=$(awk -v t0="$t0" '$2 != 404 { printf "%s%.1fs", s, $1 - t0; s = " " }' "$work/probe.log")

# --- Results: the error log -------------------------------------------------------------------
# Expected: the fetch threads' line for a source that failed, naming one of our two Redis
# (src/fetcher.rs, Health::mark_down: `redis "<url>" failed while fetching ...; skipping it for
# 1000ms`, once each time a worker starts skipping it), and at warn the events thread's
# `events subscription to redis "<url>" lost` (src/subscriber.rs). Lines about the probe's keys
# belong to the probe. Anything else above warn is unexpected.
errlog=$work/logs/error.log
src_re="redis \"redis://127\\.0\\.0\\.1:($replica_port|$primary_port)/0\""
down_re="\\[error\\] [0-9]+#[0-9]+: dynpage: $src_re failed while fetching .*; skipping it for [0-9]+ms\$"
probe_re='dynpage: page "/item/probe-[0-9]+\.html"'
grep -E '\[(error|crit|alert|emerg)\]' "$errlog" | grep -vE "$down_re" | grep -vE "$probe_re" \
  >"$work/unexpected.log" || true
unexpected=$(wc -l <"$work/unexpected.log")
sub_lost=$(grep -cE "\\[warn\\] .*dynpage: events subscription to $src_re lost" "$errlog" || true)
other_warn=$(grep '\[warn\]' "$errlog" | grep -cvE "events subscription to $src_re lost" || true)
probe_lines=$(grep -E '\[(error|crit|alert|emerg)\]' "$errlog" | grep -cE "$probe_re" || true)
# Each source-down line, classified by when it was logged: during that Redis's outage (from the
# second of its kill to its holding the page again; the log has 1 s resolution) or while it was
# running. A line while it ran whose cause is not "loading" (a replica loading its resync) means
# nginx skipped a Redis that was up. Table: count, source, when, cause.
grep -E "$down_re" "$errlog" | awk -v rp="$replica_port" -v pp="$primary_port" -v out="$work/outages.log" '
  BEGIN { while ((getline l < out) > 0) { split(l, f, " "); n++; nm[n] = f[1]; from[n] = f[2]; to[n] = f[3] } }
  {
    split($1, d, "/"); split($2, t, ":")
    ts = mktime(d[1] " " d[2] " " d[3] " " t[1] " " t[2] " " t[3])
    name = index($0, ":" rp "/0\"") ? "replica" : "primary"
    when = "running"
    for (i = 1; i <= n; i++) if (nm[i] == name && ts >= int(from[i]) && ts <= to[i]) when = "down"
    cause = $0; sub(/.*": /, "", cause); sub(/; skipping it for .*/, "", cause)
    if (when == "running" && tolower(cause) !~ /loading/) when = "RUNNING"
    c[name " " when " " cause]++
  }
  END { for (k in c) print c[k], k }' | sort -k2,2 -k3,3 -k1,1nr >"$work/down.txt"
source_down=$(awk '{ n += $1 } END { print n + 0 }' "$work/down.txt")
down_replica=$(awk '$2 == "replica" { n += $1 } END { print n + 0 }' "$work/down.txt")
down_primary=$(awk '$2 == "primary" { n += $1 } END { print n + 0 }' "$work/down.txt")
spurious=$(awk '$3 == "RUNNING" { n += $1 } END { print n + 0 }' "$work/down.txt")

# --- Results: recovery and memory -------------------------------------------------------------
# nginx asked the replica again after its last restart: HKEYS is what the fetch threads send
# for a document's meta, and a server's counters start at its restart.
replica_hkeys=$(rcli replica INFO commandstats 2>/dev/null |
  awk -F'[:=,]' '/^cmdstat_hkeys:/ { print $3 }' | tr -d '\r')
replica_hkeys=${replica_hkeys:-0}
redis_back=yes
if ! has_page primary || ! has_page replica || grep -q FAILED "$work/chaos.log" ||
  [ "$(wc -l <"$work/outages.log")" -ne 3 ]; then redis_back=no; fi
same_workers=no
[ "${workers_now[*]}" = "${workers[*]}" ] && same_workers=yes

pct() { awk -v b="$1" -v a="$2" 'BEGIN { printf "%+.1f", (b ? (a - b) * 100 / b : 0) }'; }
below() { awk -v g="$1" -v m="$2" 'BEGIN { exit !(g < m) }'; }
rss_lines=() rss_fail=0 sum_before=$master_rss_before sum_after=$master_rss_after
g=$(pct "$master_rss_before" "$master_rss_after")
((reload_count == 0)) || below "$g" "$max_growth_pct" || rss_fail=1
rss_lines+=("$(printf '  master %-8s %8d kB -> %8d kB  %6s%%' "$master" "$master_rss_before" "$master_rss_after" "$g")")
if ((reload_count == 0)); then
  for w in "${workers[@]}"; do
    b=${rss_before[$w]} a=${rss_after[$w]:-0}
    sum_before=$((sum_before + b)) sum_after=$((sum_after + a))
    g=$(pct "$b" "$a")
    below "$g" "$max_growth_pct" || rss_fail=1
    rss_lines+=("$(printf '  worker %-8s %8d kB -> %8d kB  %6s%%' "$w" "$b" "$a" "$g")")
  done
else
  for w in "${workers[@]}"; do sum_before=$((sum_before + rss_before[$w])); done
  for w in "${workers_now[@]}"; do sum_after=$((sum_after + rss_after[$w])); done
  rss_lines+=("$(printf '  workers %s -> %s (new after %d reloads)' "${workers[*]}" "${workers_now[*]}" "$reload_count")")
fi
growth=$(pct "$sum_before" "$sum_after")
below "$growth" "$max_growth_pct" || rss_fail=1

# --- Verdict and summary ----------------------------------------------------------------------
fails=()
[ "$non2xx" -eq 0 ] || fails+=("$non2xx non-2xx responses")
[ "$counted_errors" -eq 0 ] || fails+=("$counted_errors socket errors")
[ "${requests:-0}" -gt 0 ] || fails+=("no request completed")
[ "$unexpected" -eq 0 ] || fails+=("$unexpected unexpected log lines above warn")
[ "$rss_fail" -eq 0 ] || fails+=("RSS growth >= ${max_growth_pct}%")
if ((reload_count == 0)); then
  [ "$same_workers" = yes ] || fails+=("workers changed: ${workers[*]} -> ${workers_now[*]}")
else
  [ "$old_left" -eq 0 ] || fails+=("$old_left old workers still running after the last reload")
  [ "${#workers_now[@]}" -eq 2 ] || fails+=("expected 2 workers at the end, found ${workers_now[*]}")
fi
[ "$redis_back" = yes ] || fails+=("a kill or restart failed (see chaos)")
[ "$replica_hkeys" -gt 0 ] || fails+=("nginx did not ask the replica again after its restart")
[ "$final_code" = 200 ] || fails+=("the page answers $final_code after the run")
if [ "$strict" = 1 ]; then
  [ "$probe_bad" -eq 0 ] || fails+=("$probe_bad probe misses not answered 404")
  [ "$spurious" -eq 0 ] || fails+=("$spurious source-down lines for a running Redis")
fi

rps=$(awk -v n="$requests" -v d="$duration_us" 'BEGIN { printf "%.0f", (d ? n * 1e6 / d : 0) }')
secs=$(awk -v d="$duration_us" 'BEGIN { printf "%.1f", d / 1e6 }')
echo
echo "=== dynpage soak: ${duration}s, wrk -t$threads -c$conns, 2 workers, chain replica -> primary, $reload_count reloads ==="
echo "chaos (since wrk started):"
sed 's/^/  /' "$work/chaos.log"
echo "requests          $requests in ${secs}s, $rps req/s"
echo "latency           p50 $((lat_p50 / 1000)) ms, p99 $((lat_p99 / 1000)) ms, max $((lat_max / 1000)) ms"
echo "statuses          $(counts_of status)"
echo "non-2xx           $non2xx"
echo "socket errors     $socket_errors (connect $e_connect, read $e_read, write $e_write, timeout $e_timeout;" \
  "read errors at reloads, allowed up to $read_allowed: see above)"
echo "X-Dynpage source  $(counts_of source)"
if ((reload_count == 0)); then
  echo "per worker        $(counts_of worker)"
else
  echo "per worker        $(awk '$1 == "soak" && $2 == "worker" { n++; if (!min || $4 < min) min = $4; if ($4 > max) max = $4 }
    END { printf "%d workers over the reloads, %d to %d responses each", n, min, max }' "$work/wrk.out")"
fi
echo "miss probe        $probes never-seen keys: $probe_codes (404 expected; $probe_lines [error] lines)"
[ -z "$probe_bad_at" ] || echo "  not 404 at: $probe_bad_at"
echo "source-down lines $source_down [error], expected (replica $down_replica, primary $down_primary):"
sed 's/^/  /' "$work/down.txt"
echo "  (down: during that Redis's outage; running: it was up but loading; RUNNING: it was up and serving)"
echo "subscription lost $sub_lost [warn], expected; other [warn] lines: $other_warn"
echo "unexpected lines  $unexpected"
sed 's/^/  | /' "$work/unexpected.log"
echo "recovery          same workers: $same_workers (reloads: $reload_count, old workers left: $old_left)," \
  "both Redis back with the page: $redis_back," \
  "replica HKEYS since its restart: $replica_hkeys, final GET: $final_code"
echo "RSS (VmRSS)       before -> after  growth"
printf '%s\n' "${rss_lines[@]}"
printf '  total (master + workers) %8d kB -> %8d kB  %6s%%\n' "$sum_before" "$sum_after" "$growth"
if [ "$strict" != 1 ] && { [ "$probe_bad" -gt 0 ] || [ "$spurious" -gt 0 ]; }; then
  echo "NOTE: probe misses not answered 404: $probe_bad; source-down lines for a running Redis:" \
    "$spurious (STRICT=1 fails on these)"
fi
if [ ${#fails[@]} -eq 0 ]; then
  echo "PASS: zero non-2xx, no socket errors but reload closes, no unexpected log lines above warn," \
    "RSS growth < ${max_growth_pct}%, recovered by itself ($reload_count reloads)"
else
  joined=$(IFS=';'; echo "${fails[*]}")
  echo "FAIL: ${joined//;/; }"
  exit 1
fi
