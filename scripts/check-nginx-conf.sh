#!/usr/bin/env bash
# `nginx -t` on the example configurations in nginx-conf/ (each in a private prefix whose
# modules/ holds the built module; nothing is started, no port is bound):
#   scripts/check-nginx-conf.sh [NGINX [MODULE.so [CONF ...]]]
# Defaults: build/sbin/nginx, build/modules/ngx_http_dynpage_module.so, nginx-conf/*.conf
# but demo.conf (a template for scripts/run.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
nginx=${1:-$root/build/sbin/nginx}
module=${2:-$root/build/modules/ngx_http_dynpage_module.so}
shift $(( $# < 2 ? $# : 2 ))
[ $# -gt 0 ] || set -- $(ls "$root"/nginx-conf/*.conf | grep -v '/demo.conf$')
unset NGINX     # nginx reads it (inherited sockets of a binary upgrade)
status=0
for conf in "$@"; do
  dir=$(mktemp -d /tmp/dynpage-conf-t.XXXXXX)
  mkdir -p "$dir/modules" "$dir/logs" "$dir/conf"
  ln -s "$(cd "$(dirname "$module")" && pwd)/$(basename "$module")" "$dir/modules/ngx_http_dynpage_module.so"
  cp "$conf" "$dir/conf/nginx.conf"
  echo "== nginx -t $(basename "$conf")"
  "$nginx" -p "$dir" -c conf/nginx.conf -g "error_log $dir/logs/error.log; pid $dir/nginx.pid;" -t 2>&1 \
    | sed "s|$dir/||" || status=1
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  rm -rf "$dir"
done
exit $status
