#!/bin/sh
# Start a throwaway Dovecot on loopback to try mailgate's IMAP ingest by hand:
#
#   sudo scripts/dovecot/throwaway.sh [USER [PASSWORD]]
#
# Prints the ports, the CA file and an `imap:` entry for config/mailgate.yaml;
# stop it with the `kill` line it prints. Everything lives in one temp folder.
# Needs root (Dovecot's master switches to its unprivileged users) and the
# dovecot-imapd package (scripts/dovecot/ensure-installed.sh).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
user=${1:-helpdesk}
password=${2:-helpdesk-secret}

sh "$here/ensure-installed.sh"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

base=$(mktemp -d /tmp/mailgate-dovecot-XXXXXX)
chmod 0755 "$base"
imap_port=$(free_port)
imaps_port=$(free_port)

# A throwaway CA and a server certificate for 127.0.0.1 and localhost.
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
openssl req -x509 $ec -days 30 -subj "/CN=mailgate throwaway CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$base/ca.key" -out "$base/ca.crt" 2>/dev/null
openssl req $ec -subj /CN=localhost -keyout "$base/server.key" -out "$base/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
    >"$base/server.ext"
openssl x509 -req -in "$base/server.csr" -days 30 -CA "$base/ca.crt" -CAkey "$base/ca.key" \
    -CAcreateserial -extfile "$base/server.ext" -out "$base/server.crt" 2>/dev/null

printf '%s:{PLAIN}%s::::::\n' "$user" "$password" >"$base/users"
chmod 0644 "$base/users"
mkdir "$base/mail"
chown dovecot:dovecot "$base/mail"
: >"$base/extra.conf"

passdb="passdb {\\
  driver = passwd-file\\
  args = scheme=PLAIN username_format=%u $base/users\\
}"
sed -e "s|@PASSDB@|$passdb|" \
    -e "s|@AUTH_MECHANISMS@|plain login|" \
    -e "s|@BASE@|$base|g" \
    -e "s|@IMAP_PORT@|$imap_port|g" \
    -e "s|@IMAPS_PORT@|$imaps_port|g" \
    "$here/dovecot.conf.in" >"$base/dovecot.conf"

dovecot -c "$base/dovecot.conf" </dev/null >/dev/null 2>"$base/startup.err"

cat <<INFO
Dovecot is running in $base
  IMAP (STARTTLS) 127.0.0.1:$imap_port   IMAPS 127.0.0.1:$imaps_port
  user $user, password $password, log $base/dovecot.log
  stop: kill \$(cat $base/run/master.pid) && rm -rf $base

imap:
  - name: throwaway
    host: 127.0.0.1
    port: $imap_port
    security: starttls
    ca_file: $base/ca.crt
    username: $user
    password: $password
    move_to: Processed
INFO
