//! Records where nginx-sys built nginx, so the Makefile can install that binary beside the module.
fn main() {
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
