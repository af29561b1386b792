#!/usr/bin/env bash
# The postgres stand-in's entrypoint: the contract of docker-library/postgres docker-entrypoint.sh (15/bookworm),
# written for this image. Environment: POSTGRES_PASSWORD, POSTGRES_USER (postgres), POSTGRES_DB ($POSTGRES_USER),
# POSTGRES_INITDB_ARGS (each also as <NAME>_FILE), POSTGRES_INITDB_WALDIR, POSTGRES_HOST_AUTH_METHOD, PGDATA.
set -Eeo pipefail

# NAME from $NAME or from the file named by $NAME_FILE (never both), else the default.
value_or_file() {
    local name="$1" file_name="$1_FILE" value="${2:-}"
    if [ -n "${!name:-}" ] && [ -n "${!file_name:-}" ]; then
        echo >&2 "error: both $name and $file_name are set (but are exclusive)"
        exit 1
    fi
    if [ -n "${!name:-}" ]; then
        value="${!name}"
    elif [ -n "${!file_name:-}" ]; then
        value="$(< "${!file_name}")"
    fi
    export "$name=$value"
    unset "$file_name"
}

read_settings() {
    value_or_file POSTGRES_PASSWORD
    value_or_file POSTGRES_USER postgres
    value_or_file POSTGRES_DB "$POSTGRES_USER"
    value_or_file POSTGRES_INITDB_ARGS
    : "${POSTGRES_HOST_AUTH_METHOD:=}"
}

# Options after which postgres prints something and exits: no set-up for those.
only_prints() {
    local arg
    for arg; do
        case "$arg" in -'?' | --help | --describe-config | -V | --version) return 0 ;; esac
    done
    return 1
}

prepare_directories() {
    mkdir -p "$PGDATA"
    chmod 700 "$PGDATA" || :
    mkdir -p /var/run/postgresql || :
    chmod 3775 /var/run/postgresql || :
    if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
        mkdir -p "$POSTGRES_INITDB_WALDIR"
        [ "$(id -u)" != 0 ] || find "$POSTGRES_INITDB_WALDIR" \! -user postgres -exec chown postgres '{}' +
        chmod 700 "$POSTGRES_INITDB_WALDIR"
    fi
    if [ "$(id -u)" = 0 ]; then
        find "$PGDATA" /var/run/postgresql \! -user postgres -exec chown postgres '{}' +
    fi
}

run_initdb() {
    local uid passwd_file group_file
    uid="$(id -u)"
    # initdb needs its uid in the passwd database: nss_wrapper supplies one for an arbitrary --user.
    if ! getent passwd "$uid" > /dev/null; then
        local wrapper
        wrapper="$(find /usr/lib /lib -name libnss_wrapper.so -print -quit 2> /dev/null)"
        if [ -n "$wrapper" ]; then
            passwd_file="$(mktemp)" group_file="$(mktemp)"
            printf 'postgres:x:%s:%s:PostgreSQL:%s:/bin/false\n' "$uid" "$(id -g)" "$PGDATA" > "$passwd_file"
            printf 'postgres:x:%s:\n' "$(id -g)" > "$group_file"
            export LD_PRELOAD="$wrapper" NSS_WRAPPER_PASSWD="$passwd_file" NSS_WRAPPER_GROUP="$group_file"
        fi
    fi
    local -a args
    eval "args=($POSTGRES_INITDB_ARGS)"
    if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
        args+=(--waldir "$POSTGRES_INITDB_WALDIR")
    fi
    # A trailing newline: --pwfile refuses an empty file.
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") "${args[@]}"
    if [ -n "${passwd_file:-}" ]; then
        rm -f "$passwd_file" "$group_file"
        unset LD_PRELOAD NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP
    fi
}

require_password() {
    if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
        echo >&2 "Error: Database is uninitialized and superuser password is not specified."
        echo >&2 "       Set POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE), or POSTGRES_HOST_AUTH_METHOD=trust."
        exit 1
    fi
    if [ "$POSTGRES_HOST_AUTH_METHOD" = trust ]; then
        echo >&2 "WARNING: POSTGRES_HOST_AUTH_METHOD=trust lets every host connect without a password."
    fi
}

# Remote logins: `host all all all <method>`, the method defaulting to the server's password_encryption.
append_host_rule() {
    [ "$1" != postgres ] || shift
    : "${POSTGRES_HOST_AUTH_METHOD:=$(postgres -C password_encryption "$@")}"
    {
        printf '\n'
        [ "$POSTGRES_HOST_AUTH_METHOD" != trust ] || printf '# warning trust is enabled for all connections\n'
        printf 'host all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD"
    } >> "$PGDATA/pg_hba.conf"
}

as_superuser() {
    local -a psql_args=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
    [ -z "$POSTGRES_DB" ] || psql_args+=(--dbname "$POSTGRES_DB")
    PGHOST= PGHOSTADDR= "${psql_args[@]}" "$@"
}

# A server on the socket only, with the container's own server options.
start_setup_server() {
    [ "$1" != postgres ] || shift
    set -- "$@" -c listen_addresses='' -p "${PGPORT:-5432}"
    NOTIFY_SOCKET= PGUSER="${PGUSER:-$POSTGRES_USER}" pg_ctl -D "$PGDATA" -o "$(printf '%q ' "$@")" -w start
}

stop_setup_server() {
    PGUSER="${PGUSER:-postgres}" pg_ctl -D "$PGDATA" -m fast -w stop
}

create_database() {
    local exists
    exists="$(POSTGRES_DB= as_superuser --dbname postgres --set db="$POSTGRES_DB" --tuples-only \
        <<< "SELECT 1 FROM pg_database WHERE datname = :'db';")"
    if [ -z "$exists" ]; then
        POSTGRES_DB= as_superuser --dbname postgres --set db="$POSTGRES_DB" <<< 'CREATE DATABASE :"db";'
    fi
}

# The initdb scripts, in name order: shell scripts run (executable) or sourced, SQL fed to psql.
run_init_files() {
    local file
    for file; do
        case "$file" in
            *.sh)
                if [ -x "$file" ]; then
                    echo "$0: running $file"
                    "$file"
                else
                    echo "$0: sourcing $file"
                    # shellcheck disable=SC1090
                    . "$file"
                fi
                ;;
            *.sql) echo "$0: running $file"; as_superuser -f "$file" ;;
            *.sql.gz) echo "$0: running $file"; gunzip -c "$file" | as_superuser ;;
            *.sql.xz) echo "$0: running $file"; xzcat "$file" | as_superuser ;;
            *.sql.zst) echo "$0: running $file"; zstd -dc "$file" | as_superuser ;;
            *) echo "$0: ignoring $file" ;;
        esac
    done
}

main() {
    if [ "${1:0:1}" = - ]; then
        set -- postgres "$@"
    fi
    if [ "$1" = postgres ] && ! only_prints "$@"; then
        read_settings
        prepare_directories
        if [ "$(id -u)" = 0 ]; then
            exec gosu postgres "${BASH_SOURCE[0]}" "$@"
        fi
        if [ ! -s "$PGDATA/PG_VERSION" ]; then
            require_password
            ls /docker-entrypoint-initdb.d/ > /dev/null
            run_initdb
            append_host_rule "$@"
            # For a local rule with a password method in POSTGRES_INITDB_ARGS.
            export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
            start_setup_server "$@"
            create_database
            shopt -s nullglob
            run_init_files /docker-entrypoint-initdb.d/*
            shopt -u nullglob
            stop_setup_server
            unset PGPASSWORD
            echo "PostgreSQL init process complete; ready for start up."
        else
            echo "PostgreSQL Database directory appears to contain a database; Skipping initialization"
        fi
    fi
    exec "$@"
}

# Sourced (to reuse the functions above), it runs nothing.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
