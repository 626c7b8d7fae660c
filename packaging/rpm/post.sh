# $1: 1 on a first install, 2 on an upgrade.
# The account first: the store's directory, the bus policy and the unit
# all name it.
if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers apikey.conf || :
else
    getent group apikeyd >/dev/null || groupadd -r apikeyd
    getent passwd apikeyd >/dev/null ||
        useradd -r -g apikeyd -d /var/lib/apikey -M -s /sbin/nologin \
            -c "apikey key store daemon" apikeyd
    getent group apikey-admin >/dev/null || groupadd -r apikey-admin
    getent group apikey-auth >/dev/null || groupadd -r apikey-auth
fi
if command -v systemd-tmpfiles >/dev/null 2>&1; then
    systemd-tmpfiles --create apikey.conf || :
else
    install -d -m 0700 -o apikeyd -g apikeyd /var/lib/apikey
fi
# The bus read the policy before the account existed (see the deb's
# postinst); it must read it again before the daemon can own its name.
if [ -S /run/dbus/system_bus_socket ]; then
    dbus-send --system --print-reply --dest=org.freedesktop.DBus / \
        org.freedesktop.DBus.ReloadConfig >/dev/null 2>&1 || :
fi
# Enabled or not as the distribution's presets say; bus activation starts
# the daemon on first use either way.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
    if [ "$1" -eq 1 ]; then
        systemctl --no-reload preset apikeyd.service || :
    fi
fi
