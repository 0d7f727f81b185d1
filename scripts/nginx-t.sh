#!/usr/bin/env bash
# Checks that an nginx binary loads the given dynamic modules: `nginx -t` on a tiny config in a
# private prefix (free loopback port, nothing started) that loads them in order and uses a few
# dynpage directives. Prints nginx's own lines; exits with nginx's status.
#   scripts/nginx-t.sh NGINX MODULE.so [MODULE.so ...]     (the last module is dynpage)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 2 ] || { echo "usage: $0 NGINX MODULE.so [MODULE.so ...]" >&2; exit 2; }
nginx=$1; shift
unset NGINX     # nginx reads it (inherited sockets of a binary upgrade)
dir=$(mktemp -d /tmp/dynpage-nginx-t.XXXXXX)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/logs"
port=$("$root/scripts/free-port.sh")
{
  for m in "$@"; do echo "load_module $(cd "$(dirname "$m")" && pwd)/$(basename "$m");"; done
  cat <<EOF
error_log $dir/logs/error.log;
pid $dir/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    dynpage_redis redis://127.0.0.1:1/0;
    server {
        listen 127.0.0.1:$port;
        location / { dynpage_page \$uri; }
    }
}
EOF
} > "$dir/nginx.conf"
"$nginx" -t -p "$dir/" -c "$dir/nginx.conf" -e "$dir/logs/error.log" 2>&1
