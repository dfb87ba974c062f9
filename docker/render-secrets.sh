#!/bin/sh
# The compose demo's Redis credentials, made on first start (the `secrets`
# service runs this in the redis image before anything else starts):
#
#   render-secrets.sh TEMPLATE ACL_DIR AUTHORITY_DIR SERVICE_DIR
#
# Generates a random password (128 bits) for each of the two Redis users,
# writes ACL_DIR/users.acl from TEMPLATE with each `{{USER_PASSWORD_SHA256}}`
# placeholder replaced by the hex SHA-256 of the password (Redis's `#<hash>`
# form: the ACL file holds no plain text), and the Redis URLs with the plain
# passwords to AUTHORITY_DIR/redis_url and SERVICE_DIR/redis_url, readable
# only by SECRETS_OWNER (default 10001:10001, the image's user).
#
# Runs once: when ACL_DIR/users.acl exists, nothing changes (the volumes
# keep the credentials across restarts). Delete the three volumes to get new
# passwords.
set -eu

if [ "$#" -ne 4 ]; then
  echo "usage: $0 TEMPLATE ACL_DIR AUTHORITY_DIR SERVICE_DIR" >&2
  exit 2
fi
template=$1 acl_dir=$2 authority_dir=$3 service_dir=$4
owner=${SECRETS_OWNER:-10001:10001}
redis_host=${REDIS_HOST:-redis:6379}

if [ -s "$acl_dir/users.acl" ]; then
  echo "Redis credentials exist; unchanged"
  exit 0
fi

password() {
  od -An -tx1 -N16 /dev/urandom | tr -d ' \n'
}
sha256() {
  printf '%s' "$1" | sha256sum | cut -d' ' -f1
}

umask 077
authority_password=$(password)
client_password=$(password)
[ "${#authority_password}" -eq 32 ] && [ "${#client_password}" -eq 32 ] || {
  echo "could not read /dev/urandom" >&2
  exit 1
}

# The URLs first, the ACL file last: its presence means everything is done.
write_url() { # DIR USER PASSWORD
  printf 'redis://%s:%s@%s/\n' "$2" "$3" "$redis_host" >"$1/redis_url.tmp"
  if [ "$(id -u)" -eq 0 ]; then chown "$owner" "$1/redis_url.tmp"; fi
  chmod 0400 "$1/redis_url.tmp"
  mv -f "$1/redis_url.tmp" "$1/redis_url"
}
write_url "$authority_dir" authority "$authority_password"
write_url "$service_dir" token-client "$client_password"

sed -e "s/{{AUTHORITY_PASSWORD_SHA256}}/$(sha256 "$authority_password")/" \
  -e "s/{{TOKEN_CLIENT_PASSWORD_SHA256}}/$(sha256 "$client_password")/" \
  "$template" >"$acl_dir/users.acl.tmp"
if grep -q '{{' "$acl_dir/users.acl.tmp"; then
  echo "$template has a placeholder this script does not know" >&2
  exit 1
fi
# Redis (its own user in the image) reads it; hashes are no secret.
chmod 0444 "$acl_dir/users.acl.tmp"
mv -f "$acl_dir/users.acl.tmp" "$acl_dir/users.acl"
echo "Redis credentials generated"
