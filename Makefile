# kdump-hotplugd — build, install and package.
#
#   make                     build the release binary
#   make install DESTDIR=/tmp/root PREFIX=/usr
#                            install the binary, unit, preset, D-Bus policy, config, man pages, docs
#   make packages            build target/debian/*.deb and target/generate-rpm/*.rpm
#                            (installs cargo-deb and cargo-generate-rpm on first use)
#   make test-packaging      bash tests/packaging.sh (verify unit, install the .deb into a Debian
#                            root, compare with the .rpm, parse the D-Bus policy, render man pages)
#   make test-distro         the .deb on a real Debian 12 in QEMU (docs/README-distro.md)
#
# Targets for the demo, the test suite and the benchmarks live in their own section below.

SHELL := /bin/bash

# --- Install layout ---------------------------------------------------------------------------
# PREFIX defaults to /usr, not /usr/local: a system daemon's D-Bus policy is only read from
# /usr/share/dbus-1/system.d and /etc/dbus-1/system.d.
PREFIX        ?= /usr
SYSCONFDIR    ?= /etc
SBINDIR       ?= $(PREFIX)/sbin
UNITDIR       ?= $(PREFIX)/lib/systemd/system
PRESETDIR     ?= $(PREFIX)/lib/systemd/system-preset
DBUSPOLICYDIR ?= $(PREFIX)/share/dbus-1/system.d
DBUSIFACEDIR  ?= $(PREFIX)/share/dbus-1/interfaces
MANDIR        ?= $(PREFIX)/share/man
DOCDIR        ?= $(PREFIX)/share/doc/kdump-hotplugd
CONFDIR       := $(SYSCONFDIR)/kdump-hotplugd
DESTDIR       ?=

INSTALL      ?= install
CARGO        ?= cargo
CARGO_TARGET_DIR ?= target
export CARGO_TARGET_DIR
BIN          := $(CARGO_TARGET_DIR)/release/kdump-hotplugd

# The documented default configuration. If it is missing from the tree (it is written in
# parallel), `install` writes a placeholder that sets nothing, so every built-in default applies.
CONFIG_SRC   := config/config.toml

# Packaging tools, pinned so that a fresh machine builds the same packages.
CARGO_DEB_VERSION          := 3.8.0
CARGO_GENERATE_RPM_VERSION := 0.21.1

# Staging tree both packages are built from: exactly what `make install` produces. Fixed under
# ./target because Cargo.toml's package metadata names it by that path.
PKGROOT      := target/pkgroot

.PHONY: all build install uninstall stage tools packages deb rpm test-packaging clean-packages

all: build

build:
	$(CARGO) build --release --locked --bin kdump-hotplugd

# `make deb-arm64` installs a binary built elsewhere (INSTALL_BUILD= BIN=…): no host build first then.
INSTALL_BUILD ?= build

install: $(INSTALL_BUILD)
	$(INSTALL) -Dm0755 $(BIN) $(DESTDIR)$(SBINDIR)/kdump-hotplugd
	@# The unit names the binary by its path: follow SBINDIR (a no-op for PREFIX=/usr).
	$(INSTALL) -dm0755 $(DESTDIR)$(UNITDIR)
	sed 's|/usr/sbin/kdump-hotplugd|$(SBINDIR)/kdump-hotplugd|g' systemd/kdump-hotplugd.service \
		> $(DESTDIR)$(UNITDIR)/kdump-hotplugd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/kdump-hotplugd.service
	$(INSTALL) -Dm0644 systemd/50-kdump-hotplugd.preset $(DESTDIR)$(PRESETDIR)/50-kdump-hotplugd.preset
	$(INSTALL) -Dm0644 packaging/dbus/org.kdump.Hotplug1.conf $(DESTDIR)$(DBUSPOLICYDIR)/org.kdump.Hotplug1.conf
	$(INSTALL) -Dm0644 packaging/dbus/org.kdump.Hotplug1.xml $(DESTDIR)$(DBUSIFACEDIR)/org.kdump.Hotplug1.xml
	$(INSTALL) -Dm0644 packaging/man/kdump-hotplugd.8 $(DESTDIR)$(MANDIR)/man8/kdump-hotplugd.8
	$(INSTALL) -Dm0644 packaging/man/kdump-hotplugd.toml.5 $(DESTDIR)$(MANDIR)/man5/kdump-hotplugd.toml.5
	$(INSTALL) -dm0755 $(DESTDIR)$(CONFDIR)/config.d
	@# Never overwrite an admin's configuration on a live system.
	@if [ -e $(DESTDIR)$(CONFDIR)/config.toml ]; then \
		echo "keeping existing $(DESTDIR)$(CONFDIR)/config.toml"; \
	elif [ -f $(CONFIG_SRC) ]; then \
		echo "$(INSTALL) -m0644 $(CONFIG_SRC) $(DESTDIR)$(CONFDIR)/config.toml"; \
		$(INSTALL) -m0644 $(CONFIG_SRC) $(DESTDIR)$(CONFDIR)/config.toml; \
	else \
		echo "$(CONFIG_SRC) missing: installing a placeholder that keeps every default"; \
		printf '%s\n' '# kdump-hotplugd configuration: every setting is at its built-in default.' \
			'# See kdump-hotplugd.toml(5); put local changes in config.d/50-local.toml.' \
			> $(DESTDIR)$(CONFDIR)/config.toml; \
		chmod 0644 $(DESTDIR)$(CONFDIR)/config.toml; \
	fi
	$(INSTALL) -Dm0644 -t $(DESTDIR)$(DOCDIR) packaging/COEXISTENCE.md packaging/SECURITY-SCORE.md
	@if [ -f README.md ]; then echo "$(INSTALL) -m0644 README.md $(DESTDIR)$(DOCDIR)/"; \
		$(INSTALL) -m0644 README.md $(DESTDIR)$(DOCDIR)/; fi
	@# The README links these by relative path: keep the same layout beside it.
	$(INSTALL) -Dm0644 -t $(DESTDIR)$(DOCDIR) BENCHMARKS.md
	$(INSTALL) -Dm0644 -t $(DESTDIR)$(DOCDIR)/docs docs/*.md
	$(INSTALL) -Dm0644 -t $(DESTDIR)$(DOCDIR)/examples/kdump-hotplugd.service.d \
		systemd/kdump-hotplugd.service.d/command-loader.conf.example \
		systemd/kdump-hotplugd.service.d/private-network.conf.example
	$(INSTALL) -Dm0644 -t $(DESTDIR)$(DOCDIR)/examples/udev \
		packaging/udev/98-kexec.rules packaging/udev/70-kdump.rules packaging/udev/50-kdump-tools.rules

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/kdump-hotplugd \
		$(DESTDIR)$(UNITDIR)/kdump-hotplugd.service \
		$(DESTDIR)$(PRESETDIR)/50-kdump-hotplugd.preset \
		$(DESTDIR)$(DBUSPOLICYDIR)/org.kdump.Hotplug1.conf \
		$(DESTDIR)$(DBUSIFACEDIR)/org.kdump.Hotplug1.xml \
		$(DESTDIR)$(MANDIR)/man8/kdump-hotplugd.8 \
		$(DESTDIR)$(MANDIR)/man5/kdump-hotplugd.toml.5
	rm -rf $(DESTDIR)$(DOCDIR)
	@echo "left $(DESTDIR)$(CONFDIR) in place (configuration)"

# --- Packages -----------------------------------------------------------------------------------
# Both packages take their files from $(PKGROOT), staged by `make install`, so the .deb, the .rpm
# and a manual install cannot drift apart (tests/packaging.sh compares all three). Man pages are
# gzipped there, as both distributions ship them; the binary is stripped.

stage: build
	rm -rf $(PKGROOT)
	$(MAKE) --no-print-directory install DESTDIR=$(abspath $(PKGROOT)) PREFIX=/usr SYSCONFDIR=/etc
	gzip -9nf $(PKGROOT)/usr/share/man/man8/kdump-hotplugd.8 $(PKGROOT)/usr/share/man/man5/kdump-hotplugd.toml.5
	strip --strip-unneeded $(PKGROOT)/usr/sbin/kdump-hotplugd

tools:
	@if ! cargo-deb --version 2>/dev/null | grep -qx 'cargo-deb $(CARGO_DEB_VERSION)'; then \
		echo "installing cargo-deb $(CARGO_DEB_VERSION)"; \
		$(CARGO) install --locked cargo-deb --version $(CARGO_DEB_VERSION); fi
	@if ! cargo-generate-rpm --version 2>/dev/null | grep -qx 'cargo-generate-rpm $(CARGO_GENERATE_RPM_VERSION)'; then \
		echo "installing cargo-generate-rpm $(CARGO_GENERATE_RPM_VERSION)"; \
		$(CARGO) install --locked cargo-generate-rpm --version $(CARGO_GENERATE_RPM_VERSION); fi

deb: tools stage
	rm -f $(CARGO_TARGET_DIR)/debian/kdump-hotplugd_*.deb
	$(CARGO) deb --no-build --output $(CARGO_TARGET_DIR)/debian/

rpm: tools stage
	rm -f $(CARGO_TARGET_DIR)/generate-rpm/kdump-hotplugd-*.rpm
	$(CARGO) generate-rpm --target-dir $(CARGO_TARGET_DIR) --payload-compress gzip

packages: deb rpm
	@ls -l $(CARGO_TARGET_DIR)/debian/*.deb $(CARGO_TARGET_DIR)/generate-rpm/*.rpm

test-packaging:
	bash tests/packaging.sh

clean-packages:
	rm -rf $(PKGROOT) $(CARGO_TARGET_DIR)/debian $(CARGO_TARGET_DIR)/generate-rpm

# --- arm64 --------------------------------------------------------------------------------------
# rustup has no aarch64 standard library here: the arm64 binary is built with Debian 13's own Rust (1.85,
# the project's minimum) and cross toolchain, in a trixie chroot that tests/arm64/setup.sh makes once under
# $(ARM64_CACHE). Its target dirs (target/arm64, target/rust-1.85) keep it apart from the host toolchain's.
ARM64_CACHE  ?= /var/tmp/kdump-hotplugd-arm64
export KDUMP_HOTPLUGD_ARM64_CACHE := $(ARM64_CACHE)
ARM64_TARGET := aarch64-unknown-linux-gnu
ARM64_BIN    := target/arm64/$(ARM64_TARGET)/release/kdump-hotplugd

.PHONY: build-arm64 check-rust-1.85 deb-arm64 test-arm64

build-arm64:
	bash tests/arm64/setup.sh build build --release --locked --target $(ARM64_TARGET) --bin kdump-hotplugd

# The stated minimum, proven: the x86_64 build and the test targets with trixie's rustc/cargo 1.85.
check-rust-1.85:
	bash tests/arm64/setup.sh build build --locked
	bash tests/arm64/setup.sh build test --locked --no-run

# The arm64 .deb from the same staging as the amd64 one (`make install` into $(PKGROOT)); cargo-deb's
# --target finds the binary under target/arm64/$(ARM64_TARGET)/release and strips it with
# aarch64-linux-gnu-strip (binutils-aarch64-linux-gnu, which `setup.sh host` installs). The binary needs
# glibc 2.39 (trixie's std links pidfd_spawnp): the package is for Debian 13 and later.
deb-arm64: tools build-arm64
	bash tests/arm64/setup.sh host
	rm -rf $(PKGROOT)
	$(MAKE) --no-print-directory install INSTALL_BUILD= BIN=$(ARM64_BIN) \
		DESTDIR=$(abspath $(PKGROOT)) PREFIX=/usr SYSCONFDIR=/etc
	gzip -9nf $(PKGROOT)/usr/share/man/man8/kdump-hotplugd.8 $(PKGROOT)/usr/share/man/man5/kdump-hotplugd.toml.5
	aarch64-linux-gnu-strip --strip-unneeded $(PKGROOT)/usr/sbin/kdump-hotplugd
	rm -f target/arm64/debian/kdump-hotplugd_*_arm64.deb
	CARGO_TARGET_DIR=target/arm64 $(CARGO) deb --no-build --target $(ARM64_TARGET) --output target/arm64/debian/
	@# cargo-deb's $$auto finds no arm64 libraries on this host: dpkg-shlibdeps in the chroot adds them.
	bash tests/arm64/setup.sh deb-depends target/arm64/debian/kdump-hotplugd_*_arm64.deb
	@ls -l target/arm64/debian/*_arm64.deb

# The arm64 guest tier: Debian's arm64 kernel in QEMU 10's virt machine (UEFI, software emulation). Installs
# QEMU from bookworm-backports and the firmware on first use; see tests/arm64.rs.
test-arm64: deps build-arm64
	bash tests/arm64/setup.sh host
	$(CARGO) test --locked --test arm64 -- --ignored --test-threads=1 --nocapture

# --- Demo, tests, benchmarks --------------------------------------------------------------------
# `make demo` and `make test` are the README's two commands for a fresh Debian 12 machine: each
# installs what it needs first (as root, through apt-get).

# Build dependencies and the real parts the fast tier's tests use: dbus-daemon (tests/dbus.rs, run_real.rs),
# busctl (systemd), setpriv (util-linux), kexec (kexec-tools: tests/kexec_tools.rs), strace (the storm bench's
# smoke test attaches it, as its idle window does). Under CI=true a test whose tool is missing fails instead of
# skipping (tests/common/precondition.rs), so these must all be here.
APT_PACKAGES := build-essential pkg-config libudev-dev dbus dbus-bin dbus-daemon systemd util-linux kexec-tools \
	strace
SCENARIO     ?= virtio-mem-1t

.PHONY: deps demo test test-fast test-guest test-distro

deps:
	@# Rust itself comes from rustup (Debian 12's cargo 0.66 cannot read this Cargo.lock); say so plainly.
	@$(CARGO) --version >/dev/null 2>&1 || { echo "cargo not found: install Rust >= 1.85 with rustup first" >&2; exit 1; }
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

demo: deps
	$(CARGO) build --release --locked --bin kdump-hotplugd
	$(BIN) run --simulate=$(SCENARIO)

# The fast tier: unit, property and integration tests, then the packaging checks. With CI=true in the
# environment (.ci/run sets it) a test whose precondition is missing (root, a writable sysfs, /dev/kmsg, a tool)
# fails; without it, it prints SKIP and passes.
test-fast: deps
	$(CARGO) test --locked
	$(CARGO) test --benches --locked
	bash tests/packaging.sh

# The slow tier: real Debian kernels in QEMU (KVM when it works, software emulation otherwise). Installs
# qemu-system-x86, busybox-static, kexec-tools, cpio, kmod on first use; kernels are cached in
# $(GUEST_CACHE). See docs/README-guest.md.
GUEST_CACHE ?= /var/tmp/kdump-hotplugd-guest
export KDUMP_HOTPLUGD_GUEST_CACHE := $(GUEST_CACHE)

test-guest: deps
	bash tests/guest/setup.sh host
	$(CARGO) test --locked --test guest -- --ignored --test-threads=1 --nocapture

# The real-distribution tier: Debian 12 (systemd, udevd, D-Bus, kdump-tools) in QEMU with this tree's .deb
# installed by dpkg, judged by the dump kdump-tools saves. Installs debootstrap, qemu-system-x86, qemu-utils,
# e2fsprogs, makedumpfile and lintian on first use; the image is cached in $(DISTRO_CACHE), keyed on its inputs
# (a new .deb rebuilds only the disk). See docs/README-distro.md.
DISTRO_CACHE ?= /var/tmp/kdump-hotplugd-distro
export KDUMP_HOTPLUGD_DISTRO_CACHE := $(DISTRO_CACHE)

test-distro: deps packages
	bash tests/distro/setup.sh host
	$(CARGO) test --locked --test distro -- --ignored --test-threads=1 --nocapture

# Every tier CI runs: the fast tier, the busybox guests, the real Debian 12 system. The arm64 tier
# (test-arm64) is separate: its daemon scenarios do not pass yet (README.md says why).
test: test-fast test-guest test-distro

# Benchmarks (BENCHMARKS.md): criterion's event path and snapshot, then the report that prints one table
# against the targets. Knobs: BENCH_RUNS, BENCH_UDEV_EVENTS, BENCH_IDLE_SECONDS (see benches/storm.rs);
# CRITERION_ARGS, e.g. "--warm-up-time 1 --measurement-time 3" for a shorter run.
# `make bench-quick` is a two-minute pass through the whole pipeline; `make bench-smoke` (for CI) builds
# the benches in the test profile and runs each once, in seconds.
CRITERION_ARGS ?=
# Instruction counts (valgrind), peak RSS (GNU time), idle syscalls (strace).
BENCH_APT_PACKAGES := valgrind time strace

.PHONY: bench bench-quick bench-smoke

bench: deps
	@missing=$$(for p in $(BENCH_APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	$(CARGO) build --release --locked --bin kdump-hotplugd
	$(CARGO) bench --locked --bench event_path --bench snapshot -- $(CRITERION_ARGS)
	$(CARGO) bench --locked --bench storm

bench-quick:
	$(MAKE) --no-print-directory bench BENCH_RUNS=2 BENCH_UDEV_EVENTS=1024 BENCH_IDLE_SECONDS=5 \
		CRITERION_ARGS="--warm-up-time 1 --measurement-time 2"

bench-smoke:
	$(CARGO) test --benches --locked
