#!/usr/bin/env bash
# `make build NGINX=/path/to/nginx`: builds the module (and dynpagectl) for an nginx binary that
# is already installed, from that nginx's own source tree, and checks that nginx loads it.
#
#   scripts/build-for-nginx.sh NGINX              build; prints where the module went
#   scripts/build-for-nginx.sh --check NGINX      only the checks before building: prints the
#                                                 one-line problem on stdout (the Makefile
#                                                 stops with it before anything runs)
#   scripts/build-for-nginx.sh --out NGINX        print the output directory only
#   scripts/build-for-nginx.sh --test-env NGINX   print `export ...` lines for the t/ suite
#
# The source tree: NGINX_SRC, by default /usr/share/nginx/src (Debian's nginx-dev). Either a
# tree already configured like that nginx (it has objs/ngx_auto_config.h: used in place), or
# Debian's nginx-dev tree (it has conf_flags: copied under target/ and configured with them).
# Its version must be the binary's (`nginx -v`).
#
# Output: build/nginx-<version>/modules/ngx_http_dynpage_module.so and
# build/nginx-<version>/bin/dynpagectl; cargo works in target/nginx-<version> (its own target
# directory, so the vendored build in target/release is left alone).
# Environment: NGX_CARGO (cargo binary), NGX_CARGO_PROFILE (release), NGINX_SRC,
# TEST_NGINX_LOAD_MODULES_BEFORE (--test-env: modules loaded before dynpage; default Debian's
# ndk and lua modules when installed).
# Every failure before cargo starts is one line (stderr; stdout with --check) naming what to
# install or set.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mode=build
case "${1:-}" in --check|--out|--test-env) mode=${1#--}; shift ;; esac
nginx=${1:-}
die() {
  if [ "$mode" = check ]; then echo "NGINX=$nginx: $*"; else echo "NGINX=$nginx: $*" >&2; fi
  exit 1
}
unset NGINX     # nginx reads it (inherited sockets of a binary upgrade)

[ -n "$nginx" ] || die "set NGINX to the nginx binary to build for (e.g. NGINX=/usr/sbin/nginx)"
case $nginx in */*) ;; *) nginx=$(command -v "$nginx" || echo "$nginx") ;; esac
[ -f "$nginx" ] && [ -x "$nginx" ] || die "$nginx is not an executable: install nginx (Debian: apt-get install nginx-core) or set NGINX to the nginx binary to build for"
version=$("$nginx" -v 2>&1 | sed -n 's|^nginx version: [^/]*/\([0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*\).*|\1|p' | head -n1 || true)
[ -n "$version" ] || die "cannot read the version of $nginx (\`$nginx -v\` says: $("$nginx" -v 2>&1 | head -n1 || true)): set NGINX to an nginx binary"

out=$root/build/nginx-$version
target=$root/target/nginx-$version
if [ "$mode" = out ]; then echo "$out"; exit 0; fi
if [ "$mode" = test-env ]; then
  before=${TEST_NGINX_LOAD_MODULES_BEFORE-}
  if [ -z "${TEST_NGINX_LOAD_MODULES_BEFORE+set}" ]; then
    # Debian's Lua module (and the NDK it needs) beside dynpage, as a Debian server runs it.
    moddir=$("$nginx" -V 2>&1 | sed -n 's|.*--modules-path=\([^ ]*\).*|\1|p')
    for m in ndk_http_module.so ngx_http_lua_module.so; do
      [ -n "$moddir" ] && [ -f "$moddir/$m" ] && before="$before $moddir/$m"
    done
  fi
  [ -f "$out/modules/ngx_http_dynpage_module.so" ] || die "no $out/modules/ngx_http_dynpage_module.so: run make build NGINX=$nginx"
  printf 'export TEST_NGINX_BINARY=%q\n' "$nginx"
  printf 'export TEST_NGINX_LOAD_MODULES=%q\n' "${before# }${before:+ }$out/modules/ngx_http_dynpage_module.so"
  printf 'export TEST_DYNPAGECTL=%q\n' "$out/bin/dynpagectl"
  exit 0
fi

cargo=${NGX_CARGO:-cargo}
command -v "$cargo" >/dev/null 2>&1 || die "no $cargo: install Rust (https://rustup.rs) or set NGX_CARGO to a cargo binary"

src=${NGINX_SRC:-/usr/share/nginx/src}
[ -d "$src" ] || die "no nginx source tree at $src: install nginx-dev (apt-get install nginx-dev) or set NGINX_SRC to the configured source tree $nginx was built from"
src=$(cd "$src" && pwd)
src_version=$(sed -n 's|^#define NGINX_VERSION  *"\([0-9.]*\)".*|\1|p' "$src/src/core/nginx.h" 2>/dev/null | head -n1 || true)
[ -n "$src_version" ] || die "cannot read the nginx version of $src (no src/core/nginx.h): set NGINX_SRC to nginx $version's source tree (Debian: install nginx-dev)"
[ "$src_version" = "$version" ] || die "$src is nginx $src_version but $nginx is nginx $version: set NGINX_SRC to nginx $version's source tree (Debian: nginx-dev of the same version as nginx)"

if [ -f "$src/objs/ngx_auto_config.h" ] && [ -f "$src/objs/Makefile" ]; then
  kind=configured
elif [ -f "$src/conf_flags" ] && [ -x "$src/configure" ]; then
  kind=nginx-dev
else
  die "$src is neither configured (objs/ngx_auto_config.h) nor Debian's nginx-dev tree (conf_flags): run its ./configure with the arguments \`$nginx -V\` shows, or set NGINX_SRC"
fi
[ "$mode" = check ] && exit 0

if [ $kind = configured ]; then
  objs=$src/objs                                 # configured already: use it as it is
else
  # Debian's nginx-dev: a tree meant to be copied and configured with conf_flags.
  tree=$target/nginx-src
  stamp="$src $(cksum < "$src/conf_flags") $(cksum < "$src/src/core/nginx.h")"
  if [ "$(cat "$tree/.dynpage-configured" 2>/dev/null)" != "$stamp" ]; then
    echo "configuring a copy of $src (nginx $version) with its conf_flags in $tree"
    rm -rf "$tree" && mkdir -p "$target" && cp -a "$src" "$tree"
    # shellcheck disable=SC1091
    NGX_CONF_FLAGS=(); . "$tree/conf_flags"
    [ ${#NGX_CONF_FLAGS[@]} -gt 0 ] || die "$src/conf_flags sets no NGX_CONF_FLAGS: set NGINX_SRC to a configured source tree of $nginx"
    (cd "$tree" && ./configure "${NGX_CONF_FLAGS[@]}" > "$tree/configure.log" 2>&1) \
      || die "configure failed in $tree (the last lines of $tree/configure.log say why; libpcre2-dev, libssl-dev and zlib1g-dev are needed)"
    echo "$stamp" > "$tree/.dynpage-configured"
  fi
  objs=$tree/objs
fi

profile=${NGX_CARGO_PROFILE:-release}
case $profile in dev) pdir=debug ;; *) pdir=$profile ;; esac
echo "building dynpage for $nginx (nginx $version) with NGINX_BUILD_DIR=$objs in $target"
start=$SECONDS
NGINX_BUILD_DIR=$objs CARGO_TARGET_DIR=$target \
  "$cargo" build --manifest-path "$root/Cargo.toml" --package dynpage --package dynpagectl \
    --no-default-features --profile "$profile"
mkdir -p "$out/modules" "$out/bin"
# Write a new file and rename it: a running nginx may have the old one mapped.
install -m 0644 "$target/$pdir/libngx_http_dynpage_module.so" "$out/modules/.dynpage.so.new"
mv -f "$out/modules/.dynpage.so.new" "$out/modules/ngx_http_dynpage_module.so"
install -m 0755 "$target/$pdir/dynpagectl" "$out/bin/.dynpagectl.new"
mv -f "$out/bin/.dynpagectl.new" "$out/bin/dynpagectl"
echo "cargo took $((SECONDS - start)) s; $nginx -t with the module loaded:"
if ! "$root/scripts/nginx-t.sh" "$nginx" "$out/modules/ngx_http_dynpage_module.so" | sed 's/^/  /'; then
  die "$nginx does not load $out/modules/ngx_http_dynpage_module.so (see above)"
fi
echo "built $out/modules/ngx_http_dynpage_module.so and $out/bin/dynpagectl for $nginx"
