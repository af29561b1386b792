#!/bin/sh
# The redis stand-in's entrypoint: the contract of the official image's docker-entrypoint.sh, written for this
# image, plus the one default upstream compiles differently (see protected_mode_given).
set -e

# A first argument that is a flag or a *.conf file means redis-server.
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
    set -- redis-server "$@"
fi

# As root: the working directory (/data) handed to redis, then the same command as redis.
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
    find . \! -user redis -exec chown redis '{}' +
    exec gosu redis "$0" "$@"
fi

# Whether the command line or its configuration file (the first argument when not an option) sets
# protected-mode. Files the configuration includes are not read.
protected_mode_given() {
    shift
    case "${1:-}" in
        -*|"") ;;
        *) if [ -r "$1" ] && grep -qiE '^[[:space:]]*protected-mode[[:space:]]' "$1"; then return 0; fi ;;
    esac
    for arg; do
        [ "$arg" != --protected-mode ] || return 0
    done
    return 1
}

# Upstream's image patches Redis's source so protected-mode defaults to no (a container is reached over
# its network); Debian's binary keeps yes, so the same default is given on the command line instead.
if [ "$1" = redis-server ] && ! protected_mode_given "$@"; then
    set -- "$@" --protected-mode no
fi

# Files redis creates are its own only, unless a umask was chosen.
if [ "$(umask)" = 0022 ]; then
    umask 0077
fi

exec "$@"
