#!/usr/bin/env bash
# `make run`: a private redis-server and nginx (127.0.0.1:8080) serving the demo, published
# through dynpagectl. `make stop` stops both.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
run=$root/run
"$root/scripts/stop.sh" >/dev/null 2>&1 || true
mkdir -p "$run/logs" "$run/redis"
redis_port=${DYNPAGE_DEMO_REDIS_PORT:-6479}
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --dir "$run/redis" \
  --daemonize yes --pidfile "$run/redis.pid" --logfile "$run/redis.log"
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done

export DYNPAGE_REDIS=redis://127.0.0.1:$redis_port
ctl=$root/build/bin/dynpagectl
demo=$root/nginx-conf/demo
python3 "$root/bench/gen.py" "$run/product" >/dev/null
$ctl template put banner "$demo/banner.upon.html" >/dev/null
$ctl template put home "$demo/home.upon.html" >/dev/null
$ctl template put item "$run/product/page.upon.html" >/dev/null
$ctl page put / --data "$demo/home.json" --template home >/dev/null
$ctl page put /item/1001.html --data "$run/product/data.json" --template item >/dev/null
# Dimension mode: a template with two modules, and one key per dimension.
for t in product shop-card description; do $ctl template put "$t" "$demo/$t.upon.html" >/dev/null; done
$ctl data put item:1001:base "$demo/item-1001-base.json" >/dev/null
$ctl data put item:1001:desc:pc "$demo/item-1001-desc-pc.json" >/dev/null
$ctl data put item:1001:desc:mobile "$demo/item-1001-desc-mobile.json" >/dev/null
$ctl data put shop:9 "$demo/shop-9.json" >/dev/null

sed -e "s|@MODULE@|$root/build/modules/ngx_http_dynpage_module.so|" -e "s|@RUN@|$run|g" \
    -e "s|@REDIS_PORT@|$redis_port|" "$root/nginx-conf/demo.conf" > "$run/nginx.conf"
"$root/build/sbin/nginx" -p "$run/" -c "$run/nginx.conf" -e "$run/logs/error.log"
echo "dynpage demo is up: open http://127.0.0.1:8080/, http://127.0.0.1:8080/item/1001.html"
echo "  and http://127.0.0.1:8080/product?id=1001&shop=9 (dimension mode; try curl -A mobile)"
echo "  publish with: DYNPAGE_REDIS=$DYNPAGE_REDIS $ctl --help"
echo "  logs: $run/logs/error.log; stop with: make stop"
