#!/usr/bin/env bash
# CI: the Debian package, end to end, on this machine (root; Debian's nginx installed).
#   make deb; dpkg -i it; the module is enabled in /etc/nginx/modules-enabled and
#   `nginx -t` passes on Debian's own /etc/nginx config (nginx -t binds the configured ports for
#   an instant and starts nothing);
#   Debian's nginx, started on a free loopback port with a private config and prefix that
#   includes /etc/nginx/modules-enabled/*.conf, renders a page that the packaged dynpagectl
#   published into a private redis-server on a free port;
#   then everything is stopped, `dpkg -r` leaves the link disabled, `dpkg --purge` removes it,
#   and /etc/nginx, the modules directory and /usr/bin are as they were.
# No service is started; port 80 is never listened on.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
nginx=${DEB_NGINX:-/usr/sbin/nginx}
pkg=libnginx-mod-http-dynpage
link=/etc/nginx/modules-enabled/50-mod-http-dynpage.conf
avail=/usr/share/nginx/modules-available/mod-http-dynpage.conf
unset NGINX     # nginx reads it (inherited sockets of a binary upgrade)
fail() { echo "check-deb: FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

[ "$(id -u)" -eq 0 ] || fail "run as root (dpkg -i)"
[ -x "$nginx" ] || fail "no $nginx: install nginx-core"
status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
case $status in ''|not-installed) ;; *) fail "$pkg is already on this machine ($status): dpkg --purge $pkg first" ;; esac
moddir=$("$nginx" -V 2>&1 | sed -n 's|.*--modules-path=\([^ ]*\).*|\1|p')
moddir=${moddir:-/usr/lib/nginx/modules}

# What must be the same afterwards.
snapshot() {
  { find /etc/nginx "$moddir" /usr/share/nginx/modules-available /usr/bin/dynpagectl \
         "/usr/share/doc/$pkg" -printf '%p -> %l\n' 2>/dev/null || true; } | LC_ALL=C sort
}
before=$(snapshot)

tmp=$(mktemp -d /tmp/dynpage-check-deb.XXXXXX)
chmod 0755 "$tmp"               # nginx's workers (user nobody) reach the temp paths
installed=0 own_policy=0
cleanup() {
  set +e
  if [ -f "$tmp/nginx.pid" ]; then
    local pid; pid=$(cat "$tmp/nginx.pid")
    kill -QUIT "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  fi
  if [ -f "$tmp/redis.pid" ]; then
    local pid; pid=$(cat "$tmp/redis.pid")
    kill "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  [ "$installed" = 1 ] && dpkg --purge "$pkg" >/dev/null 2>&1
  [ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  rm -rf "$tmp"
}
trap cleanup EXIT
# Maintainer scripts (nginx's reload trigger) must not start a service here.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d && own_policy=1
fi

step "make deb"
t0=$SECONDS
make -s -C "$root" deb DEB_NGINX="$nginx" | sed 's/^/   /' || fail "make deb failed"
deb=$(ls -t "$root"/build/deb/${pkg}_*.deb | head -n1)
echo "   $((SECONDS - t0)) s: $deb"
depends=$(dpkg-deb --field "$deb" Depends)
abi=$(dpkg-query -W -f='${Provides}\n' "$(dpkg-query -S "$(readlink -f "$nginx")" | cut -d: -f1)" \
      | tr ',' '\n' | sed -n 's/^ *\(nginx-abi-[^ ]*\).*/\1/p')
case ", $depends," in *", $abi,"*) ;; *) fail "Depends ($depends) lacks $abi" ;; esac

step "dpkg -i $(basename "$deb")"
installed=1
dpkg -i "$deb" 2>&1 | sed 's/^/   /'
[ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg")" = installed ] || fail "$pkg is not installed"
for f in "$moddir/ngx_http_dynpage_module.so" "$avail" /usr/bin/dynpagectl \
         "/usr/share/doc/$pkg/copyright" "/usr/share/doc/$pkg/changelog.Debian.gz"; do
  [ -f "$f" ] || fail "no $f"
done
[ "$(readlink "$link")" = "$avail" ] || fail "$link does not point to $avail"
echo "   $link -> $(readlink "$link")"

step "nginx -t (Debian's /etc/nginx/nginx.conf)"
"$nginx" -t 2>&1 | sed 's/^/   /' || fail "nginx -t failed with the module enabled"
dump=$("$nginx" -T 2>/dev/null) || fail "nginx -T failed"
grep -q '^load_module modules/ngx_http_dynpage_module.so;' <<< "$dump" \
  || fail "nginx -T shows no load_module of the dynpage module"

step "Debian's nginx with a private config and prefix, a private redis-server, a page from dynpagectl"
port=$("$root/scripts/free-port.sh")
rport=$("$root/scripts/free-port.sh")
[ "$port" != 80 ] && [ "$rport" != 80 ] || fail "free-port.sh gave port 80"
mkdir -p "$tmp/logs" "$tmp/redis"
ln -s "$moddir" "$tmp/modules"      # load_module modules/... is relative to the prefix
redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no --dir "$tmp/redis" \
  --daemonize yes --pidfile "$tmp/redis.pid" --logfile "$tmp/redis.log"
for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
cat > "$tmp/nginx.conf" <<EOF
include /etc/nginx/modules-enabled/*.conf;
worker_processes 2;
error_log $tmp/logs/error.log info;
pid $tmp/nginx.pid;
events { worker_connections 256; }
http {
    access_log $tmp/logs/access.log;
    client_body_temp_path $tmp/body;
    proxy_temp_path $tmp/proxy;
    fastcgi_temp_path $tmp/fastcgi;
    uwsgi_temp_path $tmp/uwsgi;
    scgi_temp_path $tmp/scgi;
    dynpage_redis redis://127.0.0.1:$rport/0;
    server {
        listen 127.0.0.1:$port;
        dynpage_debug_header on;
        location / { dynpage_page \$uri; }
    }
}
EOF
"$nginx" -p "$tmp/" -c "$tmp/nginx.conf" -e "$tmp/logs/error.log" \
  || { cat "$tmp/logs/error.log" >&2; fail "Debian's nginx did not start"; }
printf '<h1>{{ title }}</h1><p>page {{ page.key }}</p>\n' > "$tmp/page.upon.html"
printf '{"title": "Rendered by the packaged module"}\n' > "$tmp/page.json"
export DYNPAGE_REDIS=redis://127.0.0.1:$rport/0
/usr/bin/dynpagectl template put deb-check "$tmp/page.upon.html" | sed 's/^/   /'
/usr/bin/dynpagectl page put /deb-check.html --data "$tmp/page.json" --template deb-check | sed 's/^/   /'
body=
for _ in $(seq 50); do
  body=$(curl -sS --max-time 2 -D "$tmp/headers" "http://127.0.0.1:$port/deb-check.html" 2>/dev/null) || true
  case $body in *"<h1>Rendered by the packaged module</h1>"*) break ;; esac
  sleep 0.1
done
case $body in
  *"<h1>Rendered by the packaged module</h1><p>page /deb-check.html</p>"*) ;;
  *) cat "$tmp/headers" "$tmp/logs/error.log" >&2 2>/dev/null; fail "GET /deb-check.html answered: $body" ;;
esac
echo "   GET http://127.0.0.1:$port/deb-check.html: $(head -n1 "$tmp/headers" | tr -d '\r'); $(grep -i '^x-dynpage' "$tmp/headers" | tr -d '\r')"
echo "   $body"
! grep -E '\[(alert|emerg|crit)\]' "$tmp/logs/error.log" || fail "alerts in nginx's error log"

step "stop nginx and redis-server"
"$nginx" -p "$tmp/" -c "$tmp/nginx.conf" -e "$tmp/logs/error.log" -s quit
for _ in $(seq 100); do [ -f "$tmp/nginx.pid" ] || break; sleep 0.1; done
[ ! -f "$tmp/nginx.pid" ] || fail "nginx did not quit"
kill "$(cat "$tmp/redis.pid")"
for _ in $(seq 100); do [ -f "$tmp/redis.pid" ] || break; sleep 0.1; done

step "dpkg -r, then dpkg --purge"
dpkg -r "$pkg" 2>&1 | sed 's/^/   /'
[ ! -e "$link" ] && [ -L "$link.removed" ] || fail "after dpkg -r: $link should be disabled as $link.removed"
[ ! -e "$moddir/ngx_http_dynpage_module.so" ] || fail "after dpkg -r: the module is still there"
"$nginx" -t >/dev/null 2>&1 || fail "nginx -t fails after dpkg -r"
dpkg --purge "$pkg" 2>&1 | sed 's/^/   /'
installed=0
[ ! -e "$link" ] && [ ! -L "$link.removed" ] || fail "after dpkg --purge: a link is left in /etc/nginx/modules-enabled"
after=$(snapshot)
[ "$before" = "$after" ] || { diff <(echo "$before") <(echo "$after") >&2; fail "the machine differs from before"; }
echo "   /etc/nginx, $moddir, /usr/bin/dynpagectl: as before"
echo "check-deb: OK"
