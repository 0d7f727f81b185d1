#!/usr/bin/env bash
# Installs the Debian packages dynpage needs to build, run and test (when root), or says which.
set -euo pipefail
pkgs=(gcc make libclang-dev libpcre2-dev libssl-dev zlib1g-dev redis-server wrk
      libtest-base-perl libwww-perl python3)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "missing packages; run: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
