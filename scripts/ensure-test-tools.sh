#!/bin/sh
# Debian tools some tests use: systemd-analyze (to verify the unit file).
# Installing the package does not start systemd; it only brings its tools.
set -eu
command -v systemd-analyze >/dev/null 2>&1 && exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends systemd >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends systemd >/dev/null
}
command -v systemd-analyze >/dev/null
