#!/usr/bin/env bash
# CI: the standard nginx build of the module. In a copy of the nginx source tree that the
# nginx-src crate vendors (never in the crate's own folder):
#   ./configure --with-compat --with-threads --add-dynamic-module=<this repository>
#   make modules          -> objs/ngx_http_dynpage_module.so (cargo, without `vendored`)
#   make                  -> objs/nginx from the same tree
#   nginx -t              -> that nginx loads that module
#   make install DESTDIR  -> the module lands in <prefix>/modules
# and first the one-line refusals: no cargo, too old a cargo, --add-module (static).
# Work dir: build/configure-check/ (cargo's target dir objs/dynpage is kept between runs).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$root/build/configure-check
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}
fail() { echo "check-configure-build: FAIL: $*" >&2; exit 1; }

ver=$(awk '/^name = "nginx-src"$/ { getline; gsub(/"/, "", $3); print $3; exit }' "$root/Cargo.lock")
[ -n "$ver" ] || fail "no nginx-src in Cargo.lock"
find_src() { ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"nginx-src-$ver"/nginx 2>/dev/null | head -n1; }
src=$(find_src)
if [ -z "$src" ]; then cargo fetch --manifest-path "$root/Cargo.toml" >/dev/null; src=$(find_src); fi
[ -n "$src" ] && [ -f "$src/src/core/nginx.h" ] || fail "no nginx-src-$ver sources under ~/.cargo/registry (cargo fetch)"
nginx_ver=$(sed -n 's|^#define NGINX_VERSION  *"\([0-9.]*\)".*|\1|p' "$src/src/core/nginx.h")
tree=$work/nginx-$nginx_ver

echo "== copying $src (nginx $nginx_ver) to $tree"
mkdir -p "$work"
[ -d "$tree/objs/dynpage" ] && mv "$tree/objs/dynpage" "$work/cargo-target.keep"
rm -rf "$tree" "$work/dest"
cp -a "$src" "$tree"
rm -f "$tree/Makefile"                     # left there by nginx-src's own configure
# A git-layout tree (auto/configure): make it look like a release tarball, as nginx's own
# release script does, so the command is the documented ./configure.
[ -f "$tree/configure" ] || cp "$tree/auto/configure" "$tree/configure"
mkdir -p "$tree/objs"
[ -d "$work/cargo-target.keep" ] && mv "$work/cargo-target.keep" "$tree/objs/dynpage"
cd "$tree"

echo "== ./configure refuses, in one line: no cargo, an old cargo, a static build"
one_line_error() {  # <what> <expected word> <configure args...>
  local what=$1 word=$2; shift 2
  local err=$work/configure.err rc=0
  ./configure "$@" > "$work/configure.out" 2> "$err" || rc=$?
  [ "$rc" -ne 0 ] || fail "./configure $what: exit status 0"
  [ "$(wc -l < "$err")" -eq 1 ] || { cat "$err" >&2; fail "./configure $what: not one line on stderr"; }
  grep -q -- "$word" "$err" || { cat "$err" >&2; fail "./configure $what: no '$word' in the message"; }
  echo "   $what: $(cat "$err")"
}
NGX_CARGO=/nonexistent/cargo one_line_error "without cargo" "NGX_CARGO" \
  --with-compat --add-dynamic-module="$root"
NGX_CARGO="echo cargo 1.63.0" one_line_error "with cargo 1.63" "too old" \
  --with-compat --add-dynamic-module="$root"
one_line_error "with --add-module" "--add-dynamic-module" --with-compat --add-module="$root"

echo "== ./configure --with-compat --with-threads --add-dynamic-module=$root"
t0=$SECONDS
./configure --with-compat --with-threads --add-dynamic-module="$root" > "$work/configure.log" 2>&1 \
  || { tail -n 20 "$work/configure.log" >&2; fail "./configure failed (see $work/configure.log)"; }
grep ' + dynpage:' "$work/configure.log" | sed 's/^/  /'
echo "   configure took $((SECONDS - t0)) s"

echo "== make modules"
t0=$SECONDS
make -j"$jobs" modules > "$work/make-modules.log" 2>&1 \
  || { tail -n 30 "$work/make-modules.log" >&2; fail "make modules failed (see $work/make-modules.log)"; }
[ -f objs/ngx_http_dynpage_module.so ] || fail "make modules made no objs/ngx_http_dynpage_module.so"
echo "   make modules took $((SECONDS - t0)) s: $(ls -l objs/ngx_http_dynpage_module.so | awk '{print $5}') bytes"

echo "== make (nginx from the same tree)"
t0=$SECONDS
make -j"$jobs" > "$work/make.log" 2>&1 || { tail -n 30 "$work/make.log" >&2; fail "make failed (see $work/make.log)"; }
echo "   make took $((SECONDS - t0)) s; $(objs/nginx -v 2>&1)"

echo "== objs/nginx -t with objs/ngx_http_dynpage_module.so loaded"
"$root/scripts/nginx-t.sh" objs/nginx objs/ngx_http_dynpage_module.so | sed 's/^/   /' \
  || fail "objs/nginx does not load objs/ngx_http_dynpage_module.so"

echo "== make install DESTDIR=$work/dest"
make install DESTDIR="$work/dest" > "$work/make-install.log" 2>&1 || fail "make install failed (see $work/make-install.log)"
installed=$work/dest/usr/local/nginx/modules/ngx_http_dynpage_module.so
cmp -s objs/ngx_http_dynpage_module.so "$installed" || fail "make install did not put the module at $installed"
echo "   $installed"
echo "check-configure-build: OK"
