#!/bin/sh
# The nginx stand-in's entrypoint: the contract of nginxinc/docker-nginx's docker-entrypoint.sh, written for
# this image. Before nginx (or nginx-debug) starts, every file of /docker-entrypoint.d runs in name order:
# *.envsh sourced, *.sh run, when executable. This image ships none of upstream's four default scripts.
set -e

say() {
    [ -n "${NGINX_ENTRYPOINT_QUIET_LOGS:-}" ] || echo "$@"
}

if [ "$1" = nginx ] || [ "$1" = nginx-debug ]; then
    scripts="$(find /docker-entrypoint.d/ -follow -type f -print 2>/dev/null | sort -V)"
    if [ -n "$scripts" ]; then
        say "$0: running the scripts of /docker-entrypoint.d/"
        for script in $scripts; do
            case "$script" in
                *.envsh) if [ -x "$script" ]; then say "$0: sourcing $script"; . "$script";
                         else say "$0: ignoring $script, not executable"; fi ;;
                *.sh) if [ -x "$script" ]; then say "$0: launching $script"; "$script";
                      else say "$0: ignoring $script, not executable"; fi ;;
                *) say "$0: ignoring $script" ;;
            esac
        done
        say "$0: configuration complete; ready for start up"
    else
        say "$0: no files found in /docker-entrypoint.d/, skipping configuration"
    fi
fi

exec "$@"
