#!/usr/bin/env bash
# Runs the t/ suite (or the .t files given) under Test::Nginx::Socket.
# The real harness (openresty/test-nginx) is used whenever it is found: TEST_NGINX_LIB, or a
# directory of PERL5LIB holding Test/Nginx/Socket.pm. Otherwise the project's runner in t/lib.
# HARNESS=real|own forces one (real without a lib found is an error).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
real=${TEST_NGINX_LIB:-}
if [ -z "$real" ]; then
  IFS=: read -ra dirs <<< "${PERL5LIB:-}"
  for d in "${dirs[@]}"; do
    [ -n "$d" ] && [ -f "$d/Test/Nginx/Socket.pm" ] && [ "$(cd "$d" && pwd)" != "$root/t/lib" ] && { real=$d; break; }
  done
fi
harness=${HARNESS:-}
if [ -z "$harness" ]; then harness=$([ -n "$real" ] && echo real || echo own); fi
[ $# -gt 0 ] || set -- t/
case $harness in
  real)
    [ -n "$real" ] && [ -f "$real/Test/Nginx/Socket.pm" ] || {
      echo "HARNESS=real: set TEST_NGINX_LIB to openresty/test-nginx's lib/ directory" >&2; exit 2; }
    echo "t/: the real Test::Nginx::Socket from $real"
    exec prove -I "$real" -I . -r "$@" ;;
  own)
    echo "t/: the project's runner (t/lib)"
    exec prove -I t/lib -I . -r "$@" ;;
  *) echo "HARNESS must be real or own, not '$harness'" >&2; exit 2 ;;
esac
