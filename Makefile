# apikey: build, test and install.
#   sudo make install   build, install and start the daemon (SQLite store)
#   make test           install what the tests need, then run every test
#                       (APIKEY_STRICT_TESTS=1 turns every skip into a failure)

PREFIX     ?= /usr/local
DESTDIR    ?=
BINDIR     ?= $(PREFIX)/bin
SBINDIR    ?= $(PREFIX)/sbin
MANDIR     ?= $(PREFIX)/share/man
DATADIR    ?= /usr/share
SYSCONFDIR ?= /etc
STATEDIR   ?= /var/lib/apikey
UNITDIR    ?= /lib/systemd/system
# The directory libpam loads modules from (where pam_unix.so is), not PREFIX:
# /lib/x86_64-linux-gnu/security on Debian, /usr/lib64/security on Fedora.
PAMDIR     ?= $(shell dirname "$$(find -H /lib /lib64 /usr/lib /usr/lib64 -name pam_unix.so 2>/dev/null | head -n 1)")
CARGO      ?= cargo

.PHONY: all build release test test-deps check docs install uninstall start clean

all: build

build:
	$(CARGO) build --workspace --all-targets

release:
	$(CARGO) build --release --workspace

test-deps:
	sh tests/install-deps.sh

test: test-deps
	$(CARGO) fmt --all -- --check
	$(CARGO) build --workspace --all-targets
	$(CARGO) nextest run --workspace --no-fail-fast
	$(CARGO) test --workspace --doc

check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

docs:
	$(CARGO) run -q -p apikey --example gen-docs -- target/docs

install: release docs
	install -d -m 0755 $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8
	install -m 0755 target/release/apikey $(DESTDIR)$(BINDIR)/apikey
	install -m 0755 target/release/apikeyd $(DESTDIR)$(SBINDIR)/apikeyd
	install -d -m 0755 $(DESTDIR)$(PAMDIR)
	install -m 0644 target/release/libpam_apikey.so $(DESTDIR)$(PAMDIR)/pam_apikey.so
	install -m 0644 target/docs/man/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 target/docs/man/apikeyd.8 $(DESTDIR)$(MANDIR)/man8/
	install -d -m 0755 $(DESTDIR)$(DATADIR)/dbus-1/system.d $(DESTDIR)$(DATADIR)/dbus-1/interfaces
	install -m 0644 packaging/dbus/org.apikey.Keys1.conf $(DESTDIR)$(DATADIR)/dbus-1/system.d/
	install -m 0644 proto/org.apikey.Keys1.xml $(DESTDIR)$(DATADIR)/dbus-1/interfaces/
	install -d -m 0755 $(DESTDIR)$(DATADIR)/bash-completion/completions \
	  $(DESTDIR)$(DATADIR)/zsh/vendor-completions $(DESTDIR)$(DATADIR)/fish/vendor_completions.d
	install -m 0644 target/docs/completions/apikey.bash $(DESTDIR)$(DATADIR)/bash-completion/completions/apikey
	install -m 0644 target/docs/completions/_apikey $(DESTDIR)$(DATADIR)/zsh/vendor-completions/_apikey
	install -m 0644 target/docs/completions/apikey.fish $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/apikey.fish
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/apikey
	[ -e $(DESTDIR)$(SYSCONFDIR)/apikey/apikeyd.toml ] || \
	  install -m 0644 packaging/apikeyd.toml $(DESTDIR)$(SYSCONFDIR)/apikey/apikeyd.toml
	install -d -m 0700 $(DESTDIR)$(STATEDIR)
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed 's|@SBINDIR@|$(SBINDIR)|' packaging/systemd/apikeyd.service > $(DESTDIR)$(UNITDIR)/apikeyd.service
	@if [ -z "$(DESTDIR)" ]; then $(MAKE) --no-print-directory start; fi

# Creates the groups and starts the daemon: through systemd where it runs,
# otherwise directly on the running system bus (containers).
start:
	getent group apikey-admin >/dev/null || groupadd --system apikey-admin
	getent group apikey-auth >/dev/null || groupadd --system apikey-auth
	@if [ -d /run/systemd/system ]; then \
	  systemctl daemon-reload && systemctl reload dbus 2>/dev/null; \
	  systemctl enable --now apikeyd.service && systemctl restart apikeyd.service; \
	else \
	  if [ ! -S /run/dbus/system_bus_socket ]; then \
	    mkdir -p /run/dbus && dbus-daemon --system --fork; \
	  else \
	    dbus-send --system --type=method_call --dest=org.freedesktop.DBus / org.freedesktop.DBus.ReloadConfig; \
	  fi; \
	  pkill -x apikeyd && sleep 1; \
	  nohup $(SBINDIR)/apikeyd >/var/log/apikeyd.log 2>&1 & \
	  sleep 1; \
	fi
	$(BINDIR)/apikey status

uninstall:
	-@if [ -d /run/systemd/system ]; then systemctl disable --now apikeyd.service; else pkill -x apikeyd; fi
	rm -f $(DESTDIR)$(BINDIR)/apikey $(DESTDIR)$(SBINDIR)/apikeyd $(DESTDIR)$(PAMDIR)/pam_apikey.so $(DESTDIR)$(MANDIR)/man1/apikey*.1 $(DESTDIR)$(MANDIR)/man8/apikeyd.8 \
	  $(DESTDIR)$(DATADIR)/dbus-1/system.d/org.apikey.Keys1.conf \
	  $(DESTDIR)$(DATADIR)/dbus-1/interfaces/org.apikey.Keys1.xml \
	  $(DESTDIR)$(DATADIR)/bash-completion/completions/apikey \
	  $(DESTDIR)$(DATADIR)/zsh/vendor-completions/_apikey \
	  $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/apikey.fish \
	  $(DESTDIR)$(UNITDIR)/apikeyd.service
	@echo "kept $(SYSCONFDIR)/apikey and $(STATEDIR) (the keys); remove them by hand to purge"

clean:
	$(CARGO) clean
