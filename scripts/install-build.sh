#!/usr/bin/env bash
# Copies the built module, dynpagectl and nginx (built by nginx-sys from the same sources,
# configured --with-compat --with-threads) to stable paths under $2.
set -euo pipefail
profile=$1 out=$2
target=${CARGO_TARGET_DIR:-target}/$profile
objs=$(cat "$target/nginx-build-dir")
mkdir -p "$out/sbin" "$out/modules" "$out/bin"
# Write a new file and rename it: a running nginx may have the old one mapped.
install -m 0755 "$objs/nginx" "$out/sbin/.nginx.new" && mv -f "$out/sbin/.nginx.new" "$out/sbin/nginx"
install -m 0644 "$target/libngx_http_dynpage_module.so" "$out/modules/.dynpage.so.new"
mv -f "$out/modules/.dynpage.so.new" "$out/modules/ngx_http_dynpage_module.so"
install -m 0755 "$target/dynpagectl" "$out/bin/.dynpagectl.new" && mv -f "$out/bin/.dynpagectl.new" "$out/bin/dynpagectl"
