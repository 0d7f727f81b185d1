//! Records where nginx-sys built nginx, so the Makefile can install that binary beside the module.
fn main() {
    // nginx 1.23.0 turned headers_out's multi-value headers (Cache-Control among them) from
    // arrays into linked lists: `ngx_headers_lists` tells the module which layout it builds for.
    println!("cargo::rustc-check-cfg=cfg(ngx_headers_lists)");
    println!("cargo::rerun-if-env-changed=DEP_NGINX_VERSION_NUMBER");
    let version = std::env::var("DEP_NGINX_VERSION_NUMBER")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok());
    if version.is_none_or(|v| v >= 1_023_000) {
        println!("cargo::rustc-cfg=ngx_headers_lists");
    }
    // `ngx_http_gzip`: nginx was built with NGX_HTTP_GZIP (its gzip, gzip_static or gunzip
    // module; all but hand-trimmed builds), so `ngx_http_gzip_ok` is there for `dynpage_gzip`.
    println!("cargo::rustc-check-cfg=cfg(ngx_http_gzip)");
    println!("cargo::rerun-if-env-changed=DEP_NGINX_FEATURES");
    let features = std::env::var("DEP_NGINX_FEATURES").unwrap_or_default();
    if features.split(',').any(|f| f == "http_gzip") {
        println!("cargo::rustc-cfg=ngx_http_gzip");
    }
    println!("cargo::rerun-if-env-changed=DEP_NGINX_BUILD_DIR");
    if let Ok(dir) = std::env::var("DEP_NGINX_BUILD_DIR") {
        println!("cargo::rustc-env=DYNPAGE_NGINX_BUILD_DIR={dir}");
        // target/<profile>/nginx-build-dir: read by `make build` to copy objs/nginx.
        if let Ok(out) = std::env::var("OUT_DIR") {
            let profile_dir = std::path::Path::new(&out)
                .ancestors()
                .nth(3)
                .map(|p| p.to_path_buf());
            if let Some(p) = profile_dir {
                let _ = std::fs::write(p.join("nginx-build-dir"), &dir);
            }
        }
    }
}
