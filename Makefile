# The README's two commands: `make demo` and `make test`.
# End-to-end parts need root (network namespaces); SENTINEL_VIP_SKIP_E2E=1
# skips them explicitly (and says so).

CARGO ?= cargo
# Pinned: the package layout (symlink assets, man page compression) is
# checked against this version.
CARGO_DEB_VERSION := 3.8.0

.PHONY: all build deps test lint fuzz chaos demo demo-routed bench clean deb

all: build

build:
	$(CARGO) build --release

deps:
	@scripts/deps.sh

# --workspace: the lab (lab/) is a member with unit tests of its own.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The Debian package, target/debian/sentinel-vip_<version>-1_<arch>.deb:
# man pages and completions from the clap definitions first (xtask), then
# cargo-deb builds the release binary and packs everything.
deb:
	@[ "$$(cargo-deb --version 2>/dev/null | awk '{print $$2}')" = "$(CARGO_DEB_VERSION)" ] || \
		$(CARGO) install --locked --force cargo-deb --version $(CARGO_DEB_VERSION)
	$(CARGO) run -q -p xtask -- dist-assets
	rm -f target/debian/sentinel-vip_*.deb
	$(CARGO) deb

# One debug build of the binary serves every test target. Plain `cargo
# test --workspace`: the demo and the benchmark are not tests and do not run here.
# The .deb comes first: tests/e2e_package.rs installs it in a container.
# The end-to-end tests and chaos run on Debian 12's Redis and on Debian 13's and
# testing's Redis and Valkey builds
# (the lab builds and caches them from Debian's packages, lab/src/servers.rs).
test: deps lint deb
	$(CARGO) test --workspace -- --nocapture
	FUZZ_SECONDS=$${FUZZ_SECONDS:-15} scripts/fuzz.sh

# Fault injection in the lab (prints a table of measured windows), then fuzzing.
chaos: deps
	$(CARGO) test --test chaos -- --nocapture
	scripts/fuzz.sh

# Fuzz the hook-argument, config and pub/sub parsers, FUZZ_SECONDS each.
fuzz:
	scripts/fuzz.sh

demo: deps
	$(CARGO) test --release --test demo -- --nocapture

# The routed scene (issue 19): BIRD on a router and on each host, the VIP
# a /32 on lo announced over BGP. `DEMO_SCENE=routed make demo` does the same.
demo-routed: deps
	DEMO_SCENE=routed $(CARGO) test --release --test demo -- --nocapture

bench: deps
	@command -v arping >/dev/null || { apt-get install -y -qq iputils-arping >/dev/null; }
	$(CARGO) bench --bench bench

clean:
	$(CARGO) clean
