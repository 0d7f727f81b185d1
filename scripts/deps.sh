#!/usr/bin/env bash
# Installs the Debian packages dynpage needs to build, run and test (when root), or says which.
#   build:     gcc make libclang-dev libpcre2-dev libssl-dev zlib1g-dev
#   tests:     redis-server, the Perl modules of Test::Nginx::Socket (the real harness and the
#              project's runner), python3; prometheus (its promtool checks dynpage_status's
#              Prometheus text) and chromium (loads its HTML page), for t/021-status.t
#   Debian's nginx (the suite also runs against /usr/sbin/nginx beside its Lua module):
#              nginx-core nginx-dev libnginx-mod-http-lua; dpkg-dev for `make deb`, curl for its check
#   bench:     wrk; the Lua peer (../shared/bench/lua/run.sh: Debian's nginx with its Lua module):
#              lua-nginx-redis lua-cjson lua-resty-lrucache lua-resty-core
# Installing nginx-core never starts a service here: a policy-rc.d refuses it for the install.
set -euo pipefail
pkgs=(gcc make libclang-dev libpcre2-dev libssl-dev zlib1g-dev redis-server wrk python3
      libtest-base-perl libwww-perl libtest-longstring-perl liblist-moreutils-perl
      libtext-diff-perl liburi-perl libipc-run-perl
      nginx-core nginx-dev libnginx-mod-http-lua dpkg-dev curl prometheus chromium
      lua-nginx-redis lua-cjson lua-resty-lrucache lua-resty-core)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Keep packages' maintainer scripts from starting nginx or redis on this machine.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 0755 "$policy" && own_policy=1
  fi
  trap '[ "$own_policy" = 1 ] && rm -f "$policy"' EXIT
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "missing packages; run: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
