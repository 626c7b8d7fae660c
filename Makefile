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

.PHONY: all build release test test-deps check bench docs install uninstall start stop clean \
	bins package-tools stage deb rpm packages cockpit

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

release:
	$(CARGO) build --release --workspace

test-deps:
	sh tests/install-deps.sh

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
	$(CARGO) test --workspace --doc

# The bench creates test users and runs its own bus and daemon: root runs
# it directly, anyone else through sudo. It uses the release binaries it
# was built with, not the debug ones the tests use.
AS_ROOT = $(if $(filter 0,$(shell id -u)),,sudo)

bench:
	$(CARGO) build --release --workspace
	$(AS_ROOT) env APIKEY_BIN_DIR=$(CURDIR)/target/release \
	  $(CURDIR)/target/release/apikey-bench --out $(CURDIR)/target/bench

check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

docs:
	$(CARGO) run -q -p apikey --example gen-docs -- target/docs

# The same files as the packages (packaging/README.md), at PREFIX; the PAM
# module goes where libpam loads modules from. No PAM stack is changed:
# `pam-auth-update --enable apikey` does that on Debian.
install: bins docs cockpit
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
	install -m 0644 README.md docs/pam.md packaging/copyright $(DESTDIR)$(DOCDIR)/
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/apikey
	[ -e $(DESTDIR)$(SYSCONFDIR)/apikey/apikeyd.toml ] || \
	  install -m 0644 packaging/apikey/apikeyd.toml $(DESTDIR)$(SYSCONFDIR)/apikey/apikeyd.toml
	@if [ -z "$(DESTDIR)" ]; then $(MAKE) --no-print-directory start; fi

# What the package's postinst does, then the daemon as user apikeyd:
# through systemd where it runs, otherwise directly on the running system
# bus (containers), with the group the unit would give it.
start:
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
	    dbus-send --system --type=method_call --dest=org.freedesktop.DBus / org.freedesktop.DBus.ReloadConfig; \
	  fi; \
	  $(MAKE) --no-print-directory stop; \
	  groups=apikeyd; getent group shadow >/dev/null && groups=shadow; \
	  nohup setpriv --reuid=apikeyd --regid=apikeyd --groups=$$groups \
	    $(SBINDIR)/apikeyd >>/var/log/apikeyd.log 2>&1 & \
	  sleep 1; \
	fi
	$(BINDIR)/apikey status

# Stops the daemon that owns the bus name, and only that process.
stop:
	-@if [ -d /run/systemd/system ]; then \
	  systemctl stop apikeyd.service; \
	else \
	  pid=$$(dbus-send --system --print-reply=literal --dest=org.freedesktop.DBus / \
	    org.freedesktop.DBus.GetConnectionUnixProcessID string:org.apikey.Keys1 2>/dev/null | awk '{print $$2}'); \
	  if [ -n "$$pid" ]; then kill "$$pid"; while kill -0 "$$pid" 2>/dev/null; do sleep 0.2; done; fi; \
	fi

# Takes the profile out of the PAM stacks before the module goes: a stack
# naming a missing module fails every login.
uninstall:
	-@if [ -z "$(DESTDIR)" ]; then \
	  if command -v pam-auth-update >/dev/null 2>&1 && [ -e $(PAMCONFDIR)/apikey ]; then \
	    pam-auth-update --package --remove apikey; \
	  fi; \
	  if [ -d /run/systemd/system ]; then systemctl disable --now apikeyd.service; else $(MAKE) --no-print-directory stop; fi; \
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
	rm -rf $(DESTDIR)$(DOCDIR) $(DESTDIR)$(DATADIR)/cockpit/apikey
	@echo "kept $(SYSCONFDIR)/apikey, /var/lib/apikey (the keys) and the account apikeyd; remove them by hand to purge"

# Packages (packaging/README.md). The tools are installed when missing,
# at the versions the metadata in daemon/Cargo.toml was written for.
PACKAGES    = target/packages
STAGE       = $(PACKAGES)/stage
# `make deb DEB_VERSION=0.1.1-1`: another version of the same tree.
DEB_VERSION ?=

# The release build of what is installed, and nothing else.
bins:
	$(CARGO) build --release -p apikeyd -p apikey -p pam_apikey

package-tools:
	@$(CARGO) deb --version >/dev/null 2>&1 || $(CARGO) install --locked cargo-deb@3.8
	@$(CARGO) generate-rpm --version >/dev/null 2>&1 || $(CARGO) install --locked cargo-generate-rpm@0.21

# cargo-deb strips and compresses by itself; cargo-generate-rpm does not,
# so the rpm takes its binaries and man pages from here.
stage: bins docs cockpit
	rm -rf $(STAGE) && mkdir -p $(STAGE)/man
	strip --strip-unneeded -o $(STAGE)/apikeyd target/release/apikeyd
	strip --strip-unneeded -o $(STAGE)/apikey target/release/apikey
	strip --strip-unneeded -o $(STAGE)/pam_apikey.so target/release/libpam_apikey.so
	for page in target/docs/man/*; do gzip -9n < $$page > $(STAGE)/man/$${page##*/}.gz; done

deb: package-tools stage
	rm -f $(PACKAGES)/*.deb
	$(CARGO) deb -p apikeyd --no-build --output $(PACKAGES)/ $(if $(DEB_VERSION),--deb-version $(DEB_VERSION))

rpm: package-tools stage
	rm -f $(PACKAGES)/*.rpm
	$(CARGO) generate-rpm -p daemon --output $(PACKAGES)/

packages: deb rpm

clean:
	$(CARGO) clean
