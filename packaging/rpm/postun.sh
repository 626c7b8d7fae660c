# $1: 0 when the package has gone, 1 after an upgrade. rpm has no purge:
# the keys in /var/lib/apikey stay until an administrator removes them.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart apikeyd.service || :
    fi
fi
