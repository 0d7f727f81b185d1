# dynpage: `make run` starts a demo, `make test` runs every test. See README.md and
# docs/install.md.
#
# Without NGINX, everything uses the vendored build: nginx 1.28 from the nginx-src crate, built
# beside the module into build/{sbin/nginx,modules/,bin/dynpagectl}.
# With NGINX=/path/to/nginx (e.g. NGINX=/usr/sbin/nginx, Debian's), `build`, `t` and `test`
# build the module for that installed nginx from its source tree (Debian: nginx-dev) into
# build/nginx-<version>/ and run the t/ suite against that nginx.

SHELL := /bin/bash
BUILD := build
NGINX ?=
# nginx itself reads $NGINX (the sockets a binary upgrade passes on): never hand it ours.
unexport NGINX
# The nginx `make deb` packages the module for (Debian's).
DEB_NGINX := $(or $(NGINX),/usr/sbin/nginx)

# Building for an installed nginx: stop at once, in one line, when its source tree (nginx-dev),
# its version or cargo is missing (scripts/build-for-nginx.sh --check says which).
for_nginx := $(if $(filter deb,$(MAKECMDGOALS)),$(DEB_NGINX),$(if $(filter all build t test,$(or $(MAKECMDGOALS),all)),$(NGINX)))
ifneq ($(strip $(for_nginx)),)
nginx_problem := $(shell $(if $(NGINX_SRC),NGINX_SRC='$(NGINX_SRC)') $(if $(NGX_CARGO),NGX_CARGO='$(NGX_CARGO)') \
                   scripts/build-for-nginx.sh --check '$(for_nginx)')
ifneq ($(nginx_problem),)
$(error $(nginx_problem))
endif
endif

.PHONY: all deps build build-vendored build-debug run stop test unit t t-panic check check-conf bench bench-longtail deb \
        check-configure-build check-deb check-imports clean fuzz

all: build

deps:
	@scripts/deps.sh

# Builds the module and dynpagectl (and, vendored, the nginx binary from the same sources) at
# stable paths.
ifeq ($(strip $(NGINX)),)
build: build-vendored
else
build: deps
	@scripts/build-for-nginx.sh $(NGINX)
endif

build-vendored: deps
	cargo build --release --package dynpage --package dynpagectl
	@scripts/install-build.sh release $(BUILD)

# nginx configured --with-debug (on top of .cargo/config.toml's arguments) and the module built
# against it, in their own target dir, installed at build/debug/{sbin/nginx,modules/,bin/}: for
# `error_log ... debug` with nginx's own debug lines beside dynpage's.
DEBUG_TARGET := target/with-debug
build-debug: deps
	NGX_CONFIGURE_ARGS="$$(sed -n 's/^NGX_CONFIGURE_ARGS = "\(.*\)"$$/\1/p' .cargo/config.toml) --with-debug" \
	  CARGO_TARGET_DIR=$(DEBUG_TARGET) cargo build --release --package dynpage --package dynpagectl
	@CARGO_TARGET_DIR=$(DEBUG_TARGET) scripts/install-build.sh release $(BUILD)/debug
	@$(BUILD)/debug/sbin/nginx -V 2>&1 | grep -q -- --with-debug && echo "build/debug/sbin/nginx: built --with-debug"

run: build-vendored
	@scripts/run.sh

stop:
	@scripts/stop.sh

# The pure core and dynpagectl (its CLI tests start their own redis-server).
unit: deps
	cargo test --workspace --exclude dynpage

# The t/ suite against a private redis-server on a free port; with NGINX, against that nginx
# with its Lua module (and the NDK) loaded before dynpage.
t: build
ifeq ($(strip $(NGINX)),)
	@scripts/with-redis.sh scripts/prove.sh
else
	@eval "$$(scripts/build-for-nginx.sh --test-env $(NGINX))" && scripts/with-redis.sh scripts/prove.sh
endif

# t/015-panic.t and t/016-hostile-redis.t (its TEST 8) against a test-only build of the module (feature test-panic: two page keys
# panic on purpose) and its own vendored nginx, in their own target dir.
PANIC_TARGET := target/test-panic
t-panic: deps
	CARGO_TARGET_DIR=$(PANIC_TARGET) cargo build --release -p dynpage --features test-panic
	@TEST_DYNPAGE_PANIC_BUILD=1 \
	  TEST_NGINX_BINARY="$$(cat $(PANIC_TARGET)/release/nginx-build-dir)/nginx" \
	  TEST_NGINX_LOAD_MODULES="$(CURDIR)/$(PANIC_TARGET)/release/libngx_http_dynpage_module.so" \
	  scripts/with-redis.sh scripts/prove.sh t/015-panic.t t/016-hostile-redis.t

ifeq ($(strip $(NGINX)),)
test: check-imports unit t t-panic
else
test: check-imports unit t
endif

# No file imports another that imports it back, in any crate (scripts/check-imports.py; its
# self-test first: it finds a planted cycle).
check-imports:
	@python3 scripts/check-imports.py --self-test
	@python3 scripts/check-imports.py

check: deps check-imports
	cargo fmt --all --check
	cargo clippy --release --workspace --all-targets -- -D warnings

# The fuzz harnesses (fuzz/, stable Rust) for MINUTES minutes in all, split evenly over them;
# SEED=0x... repeats a run. A failure prints the case and the command that replays it, and
# fails the target. (`make unit` runs a few hundred cases of each.)
MINUTES ?= 1
fuzz:
	cargo run --profile fuzz -p dynpage-fuzz -- --minutes $(MINUTES) $(if $(SEED),--seed $(SEED))

bench: build-vendored
	@bench/run.sh

# `nginx -t` on the example configurations in nginx-conf/ (scripts/check-nginx-conf.sh).
check-conf: build-vendored
	@scripts/check-nginx-conf.sh

# The long tail (bench/longtail.sh): 20,000 pages, Zipf s=1.0, at 64m and 2m, against the Lua path.
bench-longtail: build-vendored
	@bench/longtail.sh

# libnginx-mod-http-dynpage_<version>_<arch>.deb in build/deb/, for Debian's nginx.
deb: deps
	@scripts/build-for-nginx.sh $(DEB_NGINX)
	@scripts/make-deb.sh $(DEB_NGINX)

# What CI runs after the suites (see .ci/run).
check-configure-build: deps
	@scripts/check-configure-build.sh

check-deb: deps
	@scripts/check-deb.sh

clean:
	cargo clean
	rm -rf $(BUILD) t/servroot run
