#!/bin/sh
# The database tests need PostgreSQL on 127.0.0.1:5432 (user postgres, trust
# auth, database "test"). These machines run it; start it if it is down.
#
# The cluster tests (tests/cluster) also run private servers of their own,
# which they restart and kill: they need the server binaries (initdb,
# pg_ctl under /usr/lib/postgresql/*/bin), the postgres OS user and runuser.
set -eu
server_binaries() {
    for bin in /usr/lib/postgresql/*/bin; do
        [ -x "$bin/initdb" ] && [ -x "$bin/pg_ctl" ] && return 0
    done
    return 1
}
if ! server_binaries || ! id postgres >/dev/null 2>&1 || ! command -v runuser >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends postgresql util-linux >/dev/null 2>&1 || {
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends postgresql util-linux >/dev/null
    }
    server_binaries || { echo "no initdb/pg_ctl under /usr/lib/postgresql/*/bin" >&2; exit 1; }
fi
ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
if ready; then exit 0; fi
if command -v pg_ctlcluster >/dev/null 2>&1; then
    version=$(ls /etc/postgresql 2>/dev/null | head -n1)
    if [ -n "$version" ]; then
        pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    fi
fi
for _ in 1 2 3 4 5 6 7 8 9 10; do
    if ready; then exit 0; fi
    sleep 1
done
echo "PostgreSQL is not answering on 127.0.0.1:5432; the database tests need it" >&2
exit 1
