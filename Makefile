# apikey: build, test and install.
#   sudo make install   build, install and start the daemon (SQLite store)
#   make deb / make rpm the distribution packages, in target/packages/
#   make test           install what the tests need, build the packages,
#                       then run every test
#                       (APIKEY_STRICT_TESTS=1 turns every skip into a failure)
#   make cockpit        the Cockpit page, in cockpit/dist (npm packages from
#                       the committed lock file)
#   make bench          release build, then the benchmarks as root (a few
#                       minutes); table on stdout, JSON under target/bench/
#   make mutants        mutation testing of the security-relevant files
#                       (about an hour); MUTANTS_BASE=REV|auto: only the
#                       lines changed since REV (CI: auto)

PREFIX     ?= /usr/local
DESTDIR    ?=
BINDIR     ?= $(PREFIX)/bin
SBINDIR    ?= $(PREFIX)/sbin
MANDIR     ?= $(PREFIX)/share/man
DOCDIR     ?= $(PREFIX)/share/doc/apikey
DATADIR    ?= /usr/share
SYSCONFDIR ?= /etc
# Where systemd, sysusers, tmpfiles and pam-auth-update look whatever the
# PREFIX (the store itself is always /var/lib/apikey).
UNITDIR    ?= /lib/systemd/system
SYSUSERSDIR ?= /usr/lib/sysusers.d
TMPFILESDIR ?= /usr/lib/tmpfiles.d
PAMCONFDIR ?= $(DATADIR)/pam-configs
# The directory libpam loads modules from (where pam_unix.so is), not PREFIX:
# /lib/x86_64-linux-gnu/security on Debian, /usr/lib64/security on Fedora.
PAMDIR     ?= $(shell dirname "$$(find -H /lib /lib64 /usr/lib /usr/lib64 -name pam_unix.so 2>/dev/null | head -n 1)")
CARGO      ?= cargo

# Cargo tools at exact versions (tests/cargo-tool.sh), installed into
# target/tools, which comes first on PATH for every recipe.
TOOLS      := $(CURDIR)/target/tools
# Once: a sub-make must not change PATH again, or build scripts that
# watch it would make cargo rebuild.
ifeq ($(filter $(TOOLS)/bin,$(subst :, ,$(PATH))),)
export PATH := $(TOOLS)/bin:$(PATH)
endif
CARGO_DEB_VERSION          = 3.8.0
CARGO_GENERATE_RPM_VERSION = 0.21.1
CARGO_NEXTEST_VERSION      = 0.9.143
CARGO_AFL_VERSION          = 0.18.2
CARGO_MUTANTS_VERSION      = 27.1.0
# Package timestamps: the last commit's, so a tree builds the same bytes.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
export SOURCE_DATE_EPOCH

.PHONY: all build release test test-deps check bench docs install uninstall start stop clean \
	bins package-tools stage deb rpm pack-deb pack-rpm packages cockpit screenshots fuzz \
	mutants

all: build

build: cockpit
	$(CARGO) build --workspace --all-targets

# The Cockpit page: PatternFly and the browser driver the tests use come
# from npm at the versions of cockpit/package-lock.json; the page itself
# is plain JavaScript, copied with one stylesheet into cockpit/dist.
NPM ?= npm
COCKPIT_INPUTS = $(wildcard cockpit/src/*) cockpit/build.mjs cockpit/node_modules/.package-lock.json

cockpit: cockpit/dist/manifest.json

cockpit/node_modules/.package-lock.json: cockpit/package.json cockpit/package-lock.json
	cd cockpit && $(NPM) ci --no-audit --no-fund

cockpit/dist/manifest.json: $(COCKPIT_INPUTS)
	cd cockpit && node build.mjs

# The README's pictures of the Cockpit page, as the browser tests took
# them in their last run (target/cockpit-screens).
SCREENS = target/cockpit-screens
screenshots:
	cp $(SCREENS)/user-generated-key.png docs/cockpit-user.png
	cp $(SCREENS)/admin-keys-selected.png docs/cockpit-admin.png
	cp $(SCREENS)/shell-menu.png docs/cockpit-menu.png

release:
	$(CARGO) build --release --workspace

test-deps:
	sh tests/install-deps.sh
	sh tests/cargo-tool.sh cargo-nextest $(CARGO_NEXTEST_VERSION) --on-path
	sh tests/systemd-root.sh

# The packaging tests read the packages in target/packages, so they are
# built first, every time: a package left from an older tree would pass
# tests it no longer should.
test: test-deps
	$(CARGO) fmt --all -- --check
	$(MAKE) --no-print-directory cockpit
	cd cockpit && node --test test/unit/*.test.mjs
	$(CARGO) build --workspace --all-targets
	$(MAKE) --no-print-directory packages
	$(CARGO) nextest run --workspace --no-fail-fast
	# The login tests once more with every daemon a fleet host on a
	# PostgreSQL database of its own (fleet mode's backend).
	APIKEY_TEST_STORE=postgresql $(CARGO) nextest run -p apikey-tests --no-fail-fast \
	  --test pam_codes --test sshd --test vsftpd --test nginx --test authorization
	$(CARGO) test --workspace --doc

# The bench creates test users and runs its own bus and daemon: root runs
# it directly, anyone else through sudo. It uses the release binaries it
# was built with, not the debug ones the tests use.
AS_ROOT = $(if $(filter 0,$(shell id -u)),,sudo)

bench:
	$(CARGO) build --release --workspace
	$(AS_ROOT) env APIKEY_BIN_DIR=$(CURDIR)/target/release \
	  $(CURDIR)/target/release/apikey-bench --out $(CURDIR)/target/bench

# Coverage-guided fuzzing (fuzz/run.sh): every target for FUZZ_SECONDS
# each, after replaying the seeds and past crashes; the counts go to
# target/fuzz/report.txt. CI runs it briefly.
FUZZ_SECONDS ?= 600
fuzz: test-deps
	CARGO_AFL_VERSION=$(CARGO_AFL_VERSION) sh fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Mutation testing (tests/mutants.py): cargo-mutants over the files whose
# decisions guard keys and logins, judged by the unit tests of every crate
# that uses them; fails on a missed mutant not listed, with its reason, in
# tests/mutants-equivalent.txt. MUTANTS_FILES narrows it to some files.
MUTANTS_BASE ?=
MUTANTS_FILES ?=
mutants: test-deps
	sh tests/cargo-tool.sh cargo-mutants $(CARGO_MUTANTS_VERSION)
	python3 tests/mutants.py $(if $(MUTANTS_BASE),--diff $(MUTANTS_BASE)) $(MUTANTS_FILES)

check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Generated by the release build of the CLI's definitions, which `bins`
# makes in the same cargo run as the binaries: one build, not two.
docs: bins
	target/release/examples/gen-docs target/docs

# The same files as the packages (packaging/README.md), at PREFIX; the PAM
# module goes where libpam loads modules from. No PAM stack is changed:
# `pam-auth-update --enable apikey` does that on Debian.
install: docs cockpit
	install -d -m 0755 $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8
	install -m 0755 target/release/apikey $(DESTDIR)$(BINDIR)/apikey
	install -m 0755 target/release/apikeyd $(DESTDIR)$(SBINDIR)/apikeyd
	install -d -m 0755 $(DESTDIR)$(PAMDIR)
	install -m 0644 target/release/libpam_apikey.so $(DESTDIR)$(PAMDIR)/pam_apikey.so
	install -m 0644 target/docs/man/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 target/docs/man/apikeyd.8 $(DESTDIR)$(MANDIR)/man8/
	install -d -m 0755 $(DESTDIR)$(DATADIR)/dbus-1/system.d $(DESTDIR)$(DATADIR)/dbus-1/system-services \
	  $(DESTDIR)$(DATADIR)/dbus-1/interfaces
	install -m 0644 packaging/dbus-1/system.d/org.apikey.Keys1.conf $(DESTDIR)$(DATADIR)/dbus-1/system.d/
	sed 's|/usr/sbin/apikeyd|$(SBINDIR)/apikeyd|' packaging/dbus-1/system-services/org.apikey.Keys1.service \
	  > $(DESTDIR)$(DATADIR)/dbus-1/system-services/org.apikey.Keys1.service
	install -m 0644 proto/org.apikey.Keys1.xml $(DESTDIR)$(DATADIR)/dbus-1/interfaces/
	install -d -m 0755 $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(PAMCONFDIR)
	sed 's|/usr/sbin/apikeyd|$(SBINDIR)/apikeyd|' packaging/systemd/apikeyd.service > $(DESTDIR)$(UNITDIR)/apikeyd.service
	install -m 0644 packaging/sysusers.d/apikey.conf $(DESTDIR)$(SYSUSERSDIR)/apikey.conf
	install -m 0644 packaging/tmpfiles.d/apikey.conf $(DESTDIR)$(TMPFILESDIR)/apikey.conf
	install -m 0644 packaging/pam-configs/apikey $(DESTDIR)$(PAMCONFDIR)/apikey
	install -d -m 0755 $(DESTDIR)$(DATADIR)/bash-completion/completions \
	  $(DESTDIR)$(DATADIR)/zsh/vendor-completions $(DESTDIR)$(DATADIR)/fish/vendor_completions.d
	install -m 0644 target/docs/completions/apikey.bash $(DESTDIR)$(DATADIR)/bash-completion/completions/apikey
	install -m 0644 target/docs/completions/_apikey $(DESTDIR)$(DATADIR)/zsh/vendor-completions/_apikey
	install -m 0644 target/docs/completions/apikey.fish $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/apikey.fish
	install -d -m 0755 $(DESTDIR)$(DATADIR)/cockpit/apikey
	install -m 0644 cockpit/dist/* $(DESTDIR)$(DATADIR)/cockpit/apikey/
	install -d -m 0755 $(DESTDIR)$(DOCDIR)
	install -m 0644 README.md docs/pam.md docs/fleet.md packaging/copyright $(DESTDIR)$(DOCDIR)/
	install -d -m 0755 $(DESTDIR)$(DATADIR)/apikey/fleet/migrations
	install -m 0644 packaging/fleet/roles.sql packaging/fleet/fleet-network.conf $(DESTDIR)$(DATADIR)/apikey/fleet/
	install -m 0644 packaging/fleet/migrations/*.sql $(DESTDIR)$(DATADIR)/apikey/fleet/migrations/
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/apikey
	[ -e $(DESTDIR)$(SYSCONFDIR)/apikey/apikeyd.toml ] || \
	  install -m 0644 packaging/apikey/apikeyd.toml $(DESTDIR)$(SYSCONFDIR)/apikey/apikeyd.toml
	@if [ -z "$(DESTDIR)" ]; then $(MAKE) --no-print-directory start; fi

# What the package's postinst does, then the daemon as user apikeyd:
# through systemd where it runs, otherwise directly on the running system
# bus (containers): started as root, it takes the account and the group
# shadow itself (--run-as), as bus activation starts it there.
start:
	@sh packaging/debian/preinst install
	@if command -v systemd-sysusers >/dev/null 2>&1; then \
	  systemd-sysusers $(SYSUSERSDIR)/apikey.conf; \
	else \
	  getent group apikeyd >/dev/null || groupadd --system apikeyd; \
	  getent passwd apikeyd >/dev/null || useradd --system --gid apikeyd --no-create-home \
	    --home-dir /var/lib/apikey --shell /usr/sbin/nologin --comment "apikey key store daemon" apikeyd; \
	  getent group apikey-admin >/dev/null || groupadd --system apikey-admin; \
	  getent group apikey-auth >/dev/null || groupadd --system apikey-auth; \
	fi
	@if command -v systemd-tmpfiles >/dev/null 2>&1; then \
	  systemd-tmpfiles --create $(TMPFILESDIR)/apikey.conf; \
	else \
	  install -d -m 0700 -o apikeyd -g apikeyd /var/lib/apikey; \
	fi
	@# A store left by an older install that ran the daemon as root.
	chown -R apikeyd:apikeyd /var/lib/apikey
	@if [ -d /run/systemd/system ]; then \
	  systemctl daemon-reload && systemctl reload dbus 2>/dev/null; \
	  systemctl enable apikeyd.service && systemctl restart apikeyd.service; \
	else \
	  if [ ! -S /run/dbus/system_bus_socket ]; then \
	    mkdir -p /run/dbus && dbus-daemon --system --fork; \
	  else \
	    dbus-send --system --print-reply --dest=org.freedesktop.DBus / org.freedesktop.DBus.ReloadConfig >/dev/null; \
	  fi; \
	  $(MAKE) --no-print-directory stop; \
	  nohup $(SBINDIR)/apikeyd --run-as apikeyd --log /var/log/apikeyd.log >/dev/null 2>&1 & \
	  sleep 1; \
	fi
	$(BINDIR)/apikey status

# Stops the daemon that owns the bus name, and only that process
# (apikeyd --stop pins it before it signals it).
stop:
	-@if [ -d /run/systemd/system ]; then \
	  systemctl stop apikeyd.service; \
	else \
	  $(SBINDIR)/apikeyd --stop; \
	fi

# Takes the profile out of the PAM stacks before the module goes: a stack
# naming a missing module fails every login.
uninstall:
	@if [ -z "$(DESTDIR)" ]; then \
	  if command -v pam-auth-update >/dev/null 2>&1 && [ -e $(PAMCONFDIR)/apikey ]; then \
	    pam-auth-update --package --remove apikey; \
	  fi; \
	  if [ -x $(SBINDIR)/apikeyd ] && ! refs=$$($(SBINDIR)/apikeyd --pam-references) && [ -n "$$refs" ]; then \
	    echo "not uninstalled: these PAM lines need pam_apikey.so, and every login of their" >&2; \
	    echo "services would fail without it (\"Module is unknown\"):" >&2; \
	    printf '%s\n' "$$refs" | sed 's/^/  /' >&2; \
	    echo "delete them (or start them with '-' to make them optional), then run make uninstall again" >&2; \
	    exit 1; \
	  fi; \
	  if [ -d /run/systemd/system ]; then systemctl disable --now apikeyd.service || true; \
	  else $(MAKE) --no-print-directory stop; fi; \
	fi
	rm -f $(DESTDIR)$(BINDIR)/apikey $(DESTDIR)$(SBINDIR)/apikeyd $(DESTDIR)$(PAMDIR)/pam_apikey.so \
	  $(DESTDIR)$(MANDIR)/man1/apikey*.1 $(DESTDIR)$(MANDIR)/man8/apikeyd.8 \
	  $(DESTDIR)$(DATADIR)/dbus-1/system.d/org.apikey.Keys1.conf \
	  $(DESTDIR)$(DATADIR)/dbus-1/system-services/org.apikey.Keys1.service \
	  $(DESTDIR)$(DATADIR)/dbus-1/interfaces/org.apikey.Keys1.xml \
	  $(DESTDIR)$(UNITDIR)/apikeyd.service $(DESTDIR)$(SYSUSERSDIR)/apikey.conf \
	  $(DESTDIR)$(TMPFILESDIR)/apikey.conf $(DESTDIR)$(PAMCONFDIR)/apikey \
	  $(DESTDIR)$(DATADIR)/bash-completion/completions/apikey \
	  $(DESTDIR)$(DATADIR)/zsh/vendor-completions/_apikey \
	  $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/apikey.fish
	rm -rf $(DESTDIR)$(DOCDIR) $(DESTDIR)$(DATADIR)/cockpit/apikey $(DESTDIR)$(DATADIR)/apikey
	@echo "kept $(SYSCONFDIR)/apikey, /var/lib/apikey (the keys) and the account apikeyd; remove them by hand to purge"

# Packages (packaging/README.md). The tools are installed when missing,
# at the versions the metadata in daemon/Cargo.toml was written for.
PACKAGES    = target/packages
# Where the rpm metadata (daemon/Cargo.toml) takes its binaries from.
STAGE       = target/packages/stage
# `make deb DEB_VERSION=0.1.1-1`: another version of the same tree.
DEB_VERSION ?=

# The release build of what is installed, and nothing else.
bins:
	$(CARGO) build --release -p apikeyd -p apikey -p pam_apikey --lib --bins --example gen-docs

package-tools:
	@sh tests/cargo-tool.sh cargo-deb $(CARGO_DEB_VERSION)
	@sh tests/cargo-tool.sh cargo-generate-rpm $(CARGO_GENERATE_RPM_VERSION)

# cargo-deb strips and compresses by itself; cargo-generate-rpm does not,
# so the rpm takes its binaries and man pages from here.
stage: docs cockpit
	rm -rf $(STAGE) && mkdir -p $(STAGE)/man
	strip --strip-unneeded -o $(STAGE)/apikeyd target/release/apikeyd
	strip --strip-unneeded -o $(STAGE)/apikey target/release/apikey
	strip --strip-unneeded -o $(STAGE)/pam_apikey.so target/release/libpam_apikey.so
	for page in target/docs/man/*; do gzip -9n < $$page > $(STAGE)/man/$${page##*/}.gz; done

deb: package-tools stage
	$(MAKE) --no-print-directory pack-deb

rpm: package-tools stage
	$(MAKE) --no-print-directory pack-rpm

# Packing alone, from what `bins`, `docs` and `stage` left: the
# reproducibility test packs the same tree twice into another PACKAGES.
pack-deb:
	mkdir -p $(PACKAGES)
	rm -f $(PACKAGES)/*.deb
	$(CARGO) deb -p apikeyd --no-build --output $(PACKAGES)/ $(if $(DEB_VERSION),--deb-version $(DEB_VERSION))
	for deb in $(PACKAGES)/*.deb; do sh packaging/deb-md5sums.sh "$$deb"; done

pack-rpm:
	mkdir -p $(PACKAGES)
	rm -f $(PACKAGES)/*.rpm
	$(CARGO) generate-rpm -p daemon --output $(PACKAGES)/

packages: deb rpm

clean:
	$(CARGO) clean
