#!/bin/sh
# Make sure a Dovecot IMAP server is installed (Debian package dovecot-imapd),
# for the IMAP ingest tests, which start their own throwaway instance.
#
# Idempotent and silent when Dovecot is already there. The package's own
# system service is not needed: the tests run `dovecot -c <temp config>` on a
# loopback port, so we keep the post-install scripts from starting it.
set -eu

if command -v dovecot >/dev/null 2>&1 && command -v doveadm >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-installed: dovecot is missing and installing it needs root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

# policy-rc.d exit 101 tells invoke-rc.d not to start the packaged service;
# only create it when nobody else has one, and remove only our own.
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

install() {
    apt-get install -y -q --no-install-recommends dovecot-imapd >/tmp/dovecot-install.log 2>&1
}

# A fresh machine may have no package lists yet: update only when needed.
if ! install; then
    apt-get update -q >/tmp/dovecot-install.log 2>&1 || true
    if ! install; then
        echo "ensure-installed: apt-get install dovecot-imapd failed:" >&2
        cat /tmp/dovecot-install.log >&2
        exit 1
    fi
fi

# The packaged service may still have been started by systemd units that do
# not go through invoke-rc.d; the tests do not need it.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl stop dovecot.service dovecot.socket >/dev/null 2>&1 || true
    systemctl disable dovecot.service dovecot.socket >/dev/null 2>&1 || true
fi

command -v dovecot >/dev/null 2>&1
