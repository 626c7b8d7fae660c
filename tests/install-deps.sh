#!/bin/sh
# Installs what the build and the end-to-end tests need, when missing:
# Debian packages (each checked by a file it ships) and cargo-nextest.
set -eu

# "path-that-proves-it-is-there package"
needs='
/usr/include/security/pam_appl.h libpam0g-dev
/usr/bin/dbus-daemon dbus-daemon
/usr/bin/setpriv util-linux
/usr/sbin/useradd passwd
/usr/bin/pkg-config pkg-config
/usr/bin/pamtester pamtester
/usr/bin/bwrap bubblewrap
/usr/sbin/sshd openssh-server
/usr/bin/ssh openssh-client
/usr/bin/ssh-keygen openssh-client
/usr/bin/sshpass sshpass
/usr/sbin/vsftpd vsftpd
/usr/sbin/nginx nginx
/usr/lib/nginx/modules/ngx_http_auth_pam_module.so libnginx-mod-http-auth-pam
/usr/bin/curl curl
/usr/lib/python3/dist-packages/requests/__init__.py python3-requests
/usr/sbin/pam-auth-update libpam-runtime
/usr/bin/systemd-analyze systemd
/usr/bin/lintian lintian
/usr/bin/rpmlint rpmlint
/usr/bin/rpm rpm
/usr/lib/cockpit/cockpit-ws cockpit-ws
/usr/share/cockpit/static/fonts/RedHatText-Regular.woff2 cockpit-ws
/usr/bin/cockpit-bridge cockpit-bridge
/usr/share/cockpit/shell/manifest.json cockpit-system
/usr/bin/chromium chromium
/usr/bin/node nodejs
/usr/bin/npm npm
/usr/bin/mmdebstrap mmdebstrap
/usr/bin/nsenter util-linux
/usr/include/openssl/ssl.h libssl-dev
/usr/bin/openssl openssl
'

missing=$(printf '%s\n' "$needs" | while read -r path pkg; do
    [ -n "$path" ] && [ ! -e "$path" ] && echo "$pkg"
done | sort -u | tr '\n' ' ')

# Package scripts must not start the services on the machine: the tests
# run their own on 127.0.0.1.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi

if [ -n "$missing" ]; then
    echo "installing: $missing"
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
fi

# Fleet mode's tests make throwaway clusters of their own: the package
# must not make (and start) a system cluster, so postgresql-common's
# createcluster.conf says so before the server package is installed.
if [ ! -e /usr/lib/postgresql/15/bin/initdb ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-common
    conf=/etc/postgresql-common/createcluster.conf
    if grep -q '^#* *create_main_cluster' "$conf"; then
        sed -i 's/^#* *create_main_cluster.*/create_main_cluster = false/' "$conf"
    else
        echo 'create_main_cluster = false' >> "$conf"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        postgresql-15 postgresql-client-15
fi

command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest
