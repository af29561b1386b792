#!/bin/bash
# Altinity/clickhouse-backup v2.6.9 entrypoint.sh: anything that is not an executable runs as clickhouse-backup's
# own command (`server --watch ...`).
if [[ $# -lt 1 ]] || [[ "$1" == "--"* ]] || [[ ! -x $(command -v "$1") ]] || [[ "$1" == "watch" ]]; then
    exec /bin/clickhouse-backup "$@"
fi
exec "$@"
