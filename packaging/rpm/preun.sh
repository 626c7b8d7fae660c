# $1: 0 when the package goes away, 1 on an upgrade.
# Hand-written PAM lines (an authselect profile, docs/pam.md) that need
# the module stop the removal: without it every login of their services
# would fail ("Module is unknown").
if [ "$1" -eq 0 ]; then
    if ! refs=$(apikeyd --pam-references) && [ -n "$refs" ]; then
        echo "apikey: not removed: these PAM lines need pam_apikey.so:" >&2
        printf '%s\n' "$refs" | sed 's/^/  /' >&2
        echo "apikey: delete them (or start them with '-'), then remove again." >&2
        exit 1
    fi
fi
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now apikeyd.service || :
fi
if [ "$1" -eq 0 ] && [ ! -d /run/systemd/system ]; then
    apikeyd --stop || :
fi
