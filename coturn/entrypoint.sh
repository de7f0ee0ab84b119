#!/bin/sh
# Starts coturn from a config file plus the TURN REST secret taken from the environment.
#
# coturn reads no environment variables, and `--static-auth-secret=...` on the command line
# shows the secret to anyone who can run `ps`; so this writes a private (0600) copy of the
# config with the secret appended and runs turnserver on it. Used by compose.yaml, and by
# tests/signaling/test_turn.py against Debian's turnserver.
#
#   TURN_SECRET       required: the same value as the server's CALLASSIST_TURN_SECRET
#   TURN_CONFIG       the config to start from (default /etc/callassist/turnserver.conf)
#   TURN_REALM        optional: overrides realm=
#   TURN_EXTERNAL_IP  optional: external-ip= (the public IP, or PUBLIC/PRIVATE behind 1:1 NAT)
#   TURN_RUNTIME_DIR  where the private copy goes (default /tmp)
# Arguments are passed on to turnserver.
set -eu

: "${TURN_SECRET:?TURN_SECRET is not set: use the same value as the server's CALLASSIST_TURN_SECRET}"
case "$TURN_SECRET" in
    *[[:space:]]*) echo "entrypoint: TURN_SECRET must not contain whitespace" >&2; exit 2 ;;
esac
config="${TURN_CONFIG:-/etc/callassist/turnserver.conf}"
if [ ! -r "$config" ]; then
    echo "entrypoint: cannot read the coturn config $config" >&2
    exit 2
fi

umask 077
runtime="$(mktemp "${TURN_RUNTIME_DIR:-/tmp}/turnserver.XXXXXX")"
{
    cat "$config"
    echo
    echo "# appended by coturn/entrypoint.sh"
    echo "static-auth-secret=$TURN_SECRET"
    if [ -n "${TURN_REALM:-}" ]; then echo "realm=$TURN_REALM"; fi
    if [ -n "${TURN_EXTERNAL_IP:-}" ]; then echo "external-ip=$TURN_EXTERNAL_IP"; fi
} >"$runtime"

exec turnserver -c "$runtime" "$@"
