#!/bin/bash
# The clickhouse-server image's entrypoint (ClickHouse/docker-library server/24.8.*/entrypoint.sh), in the
# stand-in: as root, make the server's directories and hand them to clickhouse (101:101), replace user `default`
# by CLICKHOUSE_USER with the password of CLICKHOUSE_PASSWORD_FILE (or CLICKHOUSE_PASSWORD), create CLICKHOUSE_DB
# on a first start, then run the server as clickhouse (upstream: `clickhouse su`, here setpriv).
set -eo pipefail
CONFIG="${CLICKHOUSE_CONFIG:-/etc/clickhouse-server/config.xml}"
extract() { clickhouse extract-from-config --config-file="$CONFIG" --key="$1"; }

if [ "$(id -u)" = 0 ]; then
    if [ "${CLICKHOUSE_RUN_AS_ROOT:-0}" = 1 ]; then RUN_AS=0:0; else RUN_AS="$(id -u clickhouse):$(id -g clickhouse)"; fi
    DO_CHOWN=1
else
    RUN_AS="$(id -u):$(id -g)"
    DO_CHOWN=0
fi
[ "${CLICKHOUSE_DO_NOT_CHOWN:-0}" = 1 ] && DO_CHOWN=0
as_server() { if [ "$(id -u)" = 0 ]; then setpriv --reuid="${RUN_AS%:*}" --regid="${RUN_AS#*:}" --clear-groups "$@"; else "$@"; fi; }

if [ -n "${CLICKHOUSE_PASSWORD_FILE:-}" ] && [ -f "$CLICKHOUSE_PASSWORD_FILE" ]; then
    CLICKHOUSE_PASSWORD="$(cat "$CLICKHOUSE_PASSWORD_FILE")"
fi
CLICKHOUSE_USER="${CLICKHOUSE_USER:-default}"
CLICKHOUSE_PASSWORD="${CLICKHOUSE_PASSWORD:-}"
ACCESS_MANAGEMENT="${CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT:-0}"

if [ $# -ge 1 ] && [[ "$1" != --* ]]; then
    exec "$@"
fi

DATA_DIR="$(extract path)"
for dir in "$DATA_DIR" "$(dirname "$(extract logger.log)")" "$(dirname "$(extract logger.errorlog)")" \
           "$(extract tmp_path)" "$(extract user_files_path)" "$(extract format_schema_path)"; do
    [ -n "$dir" ] || continue
    if [ "$DO_CHOWN" = 1 ]; then
        mkdir -p "$dir"
        [ "$(stat -c %u:%g "$dir")" = "$RUN_AS" ] || chown -R "$RUN_AS" "$dir"
    else
        as_server mkdir -p "$dir"
    fi
done
cd "$DATA_DIR"

if [ "${CLICKHOUSE_SKIP_USER_SETUP:-0}" = 1 ]; then
    echo "$0: explicitly skip changing user 'default'"
elif [ "$CLICKHOUSE_USER" != default ] || [ -n "$CLICKHOUSE_PASSWORD" ] || [ "$ACCESS_MANAGEMENT" != 0 ]; then
    echo "$0: create new user '$CLICKHOUSE_USER' instead 'default'"
    mkdir -p /etc/clickhouse-server/users.d
    cat > /etc/clickhouse-server/users.d/default-user.xml <<EOT
<clickhouse>
  <users>
    <default remove="remove"></default>
    <${CLICKHOUSE_USER}>
      <profile>default</profile>
      <networks><ip>::/0</ip></networks>
      <password><![CDATA[${CLICKHOUSE_PASSWORD//]]>/]]]]><![CDATA[>}]]></password>
      <quota>default</quota>
      <access_management>${ACCESS_MANAGEMENT}</access_management>
    </${CLICKHOUSE_USER}>
  </users>
</clickhouse>
EOT
fi

if [ ! -d "${DATA_DIR%/}/data" ] && [ -n "${CLICKHOUSE_DB:-}" ]; then
    # First start: the server on loopback only until the database exists.
    # A simple command in the background: $! is the server itself, which the TERM below stops (a function in
    # the background would be a subshell, whose death leaves the server holding the port).
    if [ "$(id -u)" = 0 ]; then
        setpriv --reuid="${RUN_AS%:*}" --regid="${RUN_AS#*:}" --clear-groups \
            clickhouse-server --config-file="$CONFIG" -- --listen_host=127.0.0.1 &
    else
        clickhouse-server --config-file="$CONFIG" -- --listen_host=127.0.0.1 &
    fi
    pid=$!
    until wget --spider -T 1 -q "http://127.0.0.1:$(extract http_port)/ping" 2>/dev/null; do
        kill -0 "$pid" || { echo >&2 "ClickHouse init process failed."; exit 1; }
        sleep 1
    done
    echo "$0: create database '$CLICKHOUSE_DB'"
    clickhouse-client --host 127.0.0.1 -u "$CLICKHOUSE_USER" --password "$CLICKHOUSE_PASSWORD" \
        -q "CREATE DATABASE IF NOT EXISTS $CLICKHOUSE_DB"
    kill -TERM "$pid" && wait "$pid" || true
fi

exec setpriv --reuid="${RUN_AS%:*}" --regid="${RUN_AS#*:}" --clear-groups \
    clickhouse-server --config-file="$CONFIG" "$@"
