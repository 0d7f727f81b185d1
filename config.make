# Read by nginx's ./configure when it writes objs/Makefile: adds the cargo build of
# objs/ngx_http_dynpage_module.so to `make modules` (and `make`, `make install`).

. "$ngx_addon_dir/auto/dynpage"

ngx_dynpage_make
