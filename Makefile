# dynpage: `make run` starts a demo, `make test` runs every test. See README.md.

SHELL := /bin/bash
BUILD := build
MODULE := $(BUILD)/modules/ngx_http_dynpage_module.so
NGINX := $(BUILD)/sbin/nginx
CTL := $(BUILD)/bin/dynpagectl

.PHONY: all deps build run stop test unit t check bench clean

all: build

deps:
	@scripts/deps.sh

# Builds the module, dynpagectl and the nginx binary from the same sources, at stable paths.
build: deps
	cargo build --release --workspace
	@scripts/install-build.sh release $(BUILD)

run: build
	@scripts/run.sh

stop:
	@scripts/stop.sh

# The pure core and dynpagectl (its CLI tests start their own redis-server).
unit: deps
	cargo test --workspace --exclude dynpage

# The t/ suite against a private redis-server on a free port.
t: build
	@scripts/with-redis.sh scripts/prove.sh

test: unit t

check: deps
	cargo fmt --all --check
	cargo clippy --release --workspace --all-targets -- -D warnings

bench: build
	@bench/run.sh

clean:
	cargo clean
	rm -rf $(BUILD) t/servroot run
