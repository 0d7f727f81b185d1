#!/usr/bin/env bash
# `make deb`: packages the module built for Debian's nginx (scripts/build-for-nginx.sh, run
# first by the Makefile) as build/deb/libnginx-mod-http-dynpage_<version>_<arch>.deb, laid out
# the way Debian packages its own nginx modules (libnginx-mod-http-lua and friends):
#   /usr/lib/nginx/modules/ngx_http_dynpage_module.so
#   /usr/share/nginx/modules-available/mod-http-dynpage.conf  (postinst links it from
#     /etc/nginx/modules-enabled/50-mod-http-dynpage.conf; prerm/postrm undo it)
#   /usr/bin/dynpagectl
#   /usr/share/doc/libnginx-mod-http-dynpage/{copyright,changelog.Debian.gz,README.md.gz,install.md.gz}
# Depends: the nginx-abi-* that Debian's nginx Provides, plus what dpkg-shlibdeps finds.
# Plain dpkg-deb; no debhelper. Environment: DEB_REVISION (1), DEB_MAINTAINER.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
nginx=${1:-/usr/sbin/nginx}
die() { echo "make deb: $*" >&2; exit 1; }
unset NGINX

command -v dpkg-deb >/dev/null && command -v dpkg-shlibdeps >/dev/null \
  || die "dpkg-deb and dpkg-shlibdeps are needed: install dpkg-dev"
out=$("$root/scripts/build-for-nginx.sh" --out "$nginx")
nginx_version=${out##*/nginx-}
so=$out/modules/ngx_http_dynpage_module.so
ctl=$out/bin/dynpagectl
[ -f "$so" ] && [ -f "$ctl" ] || die "no $so: run make build NGINX=$nginx"

# The ABI name Debian's nginx Provides, e.g. nginx-abi-1.22.1-7.
owner=$(dpkg-query -S "$(readlink -f "$nginx")" 2>/dev/null | head -n1 | cut -d: -f1) || true
abi=
[ -n "$owner" ] && abi=$(dpkg-query -W -f='${Provides}\n' "$owner" | tr ',' '\n' | sed -n 's/^ *\(nginx-abi-[^ ]*\).*/\1/p' | head -n1)
[ -n "$abi" ] || die "$nginx belongs to no package that Provides nginx-abi-*: make deb is for Debian's nginx (NGINX=/usr/sbin/nginx from nginx-core/nginx)"
case $abi in nginx-abi-"$nginx_version"-*) ;; *) die "$nginx is nginx $nginx_version but its package provides $abi" ;; esac
moddir=$("$nginx" -V 2>&1 | sed -n 's|.*--modules-path=\([^ ]*\).*|\1|p')
moddir=${moddir:-/usr/lib/nginx/modules}

upstream=$(sed -n '/^\[workspace.package\]/,/^\[/ s/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)
[ -n "$upstream" ] || die "no version in Cargo.toml's [workspace.package]"
version=$upstream-${DEB_REVISION:-1}
arch=$(dpkg --print-architecture)
pkg=libnginx-mod-http-dynpage
maintainer=${DEB_MAINTAINER:-dynpage maintainers <maintainers@dynpage.invalid>}
# Reproducible: file times and the changelog date come from the last commit.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

work=$root/build/deb/work
dest=$work/debian/$pkg
rm -rf "$work"
mkdir -p "$dest/DEBIAN" "$dest$moddir" "$dest/usr/share/nginx/modules-available" \
         "$dest/usr/bin" "$dest/usr/share/doc/$pkg"
pk=$root/packaging/deb

# Stripped like dh_strip does (the build keeps line tables for backtraces).
install -m 0644 "$so" "$dest$moddir/ngx_http_dynpage_module.so"
install -m 0755 "$ctl" "$dest/usr/bin/dynpagectl"
strip --remove-section=.comment --remove-section=.note --strip-unneeded \
  "$dest$moddir/ngx_http_dynpage_module.so" "$dest/usr/bin/dynpagectl"
# The .conf loads modules/<name>.so relative to nginx's prefix, as Debian's own do.
install -m 0644 "$pk/mod-http-dynpage.conf" "$dest/usr/share/nginx/modules-available/"

doc=$dest/usr/share/doc/$pkg
install -m 0644 "$pk/copyright" "$doc/copyright"
gzip -9n < "$root/README.md" > "$doc/README.md.gz"
[ -f "$root/docs/install.md" ] && gzip -9n < "$root/docs/install.md" > "$doc/install.md.gz"
{
  echo "$pkg ($version) unstable; urgency=medium"
  echo
  echo "  * dynpage $upstream (commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)),"
  echo "    built for Debian's nginx $nginx_version ($abi)."
  echo
  echo " -- $maintainer  $(date -R -u -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n > "$doc/changelog.Debian.gz"
chmod 0644 "$doc"/*

for s in postinst prerm postrm; do install -m 0755 "$pk/$s" "$dest/DEBIAN/$s"; done

# What the two binaries link against, as dpkg-shlibdeps words it for Depends.
printf 'Source: dynpage\n\nPackage: %s\nArchitecture: any\n' "$pkg" > "$work/debian/control"
shlibs=$(cd "$work" && dpkg-shlibdeps -O "-e$dest$moddir/ngx_http_dynpage_module.so" \
           "-e$dest/usr/bin/dynpagectl" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || die "dpkg-shlibdeps found no shared library dependencies"

size=$(du -sk --exclude=DEBIAN "$dest" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@MAINTAINER@|$maintainer|" \
    -e "s|@INSTALLED_SIZE@|$size|" -e "s|@ABI@|$abi|" -e "s|@SHLIBS@|$shlibs|" \
    "$pk/control.in" > "$dest/DEBIAN/control"
(cd "$dest" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z \
   | xargs -0 md5sum) > "$dest/DEBIAN/md5sums"
chmod 0644 "$dest/DEBIAN/control" "$dest/DEBIAN/md5sums"
find "$dest" -type d -exec chmod 0755 {} +

deb=$root/build/deb/${pkg}_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$dest" "$deb" >/dev/null
echo "built $deb"
dpkg-deb --field "$deb" Package Version Architecture Depends | sed 's/^/  /'
