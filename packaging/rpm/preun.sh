# $1: 0 when the package goes away, 1 on an upgrade.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now apikeyd.service || :
fi
