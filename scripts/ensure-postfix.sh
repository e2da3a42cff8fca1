#!/bin/sh
# Make sure Postfix is installed (Debian package postfix), for
# tests/test_postfix_guide.py, which follows docs/deployment.md with a
# throwaway Postfix instance of its own (its own config, queue and data
# directories, loopback ports only).
#
# Idempotent and silent when Postfix is already there. The package's own
# instance is never started: the installer is told "No configuration" (so it
# writes no /etc/postfix/main.cf and no /etc/mailname) and, when nobody else
# has one, a policy-rc.d keeps invoke-rc.d from starting the service.
set -eu

if command -v postfix >/dev/null 2>&1 && command -v postconf >/dev/null 2>&1 \
    && [ -f /usr/share/postfix/master.cf.dist ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-postfix: postfix is missing and installing it needs root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections

policy=/usr/sbin/policy-rc.d
own_policy=no
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    own_policy=yes
fi
cleanup() {
    if [ "$own_policy" = yes ]; then
        rm -f "$policy"
    fi
}
trap cleanup EXIT

log=/tmp/postfix-install.log
install() {
    apt-get install -y -q --no-install-recommends postfix >"$log" 2>&1
}

# A fresh machine may have no package lists yet: update only when needed.
if ! install; then
    apt-get update -q >"$log" 2>&1 || true
    if ! install; then
        echo "ensure-postfix: apt-get install postfix failed:" >&2
        cat "$log" >&2
        exit 1
    fi
fi

# On a machine running systemd the package's unit may have been started
# anyway; the tests do not need it.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl stop postfix.service >/dev/null 2>&1 || true
    systemctl disable postfix.service >/dev/null 2>&1 || true
fi

command -v postfix >/dev/null 2>&1
