#!/bin/sh
# grafana/grafana's /run.sh (packaging/docker/run.sh) in the stand-in: the same checks of GF_PATHS_*, the
# plugins directory, every GF_*__FILE turned into GF_* from its file (both set is an error), HOME, then
# `grafana server` with the paths as cfg:default.* arguments.
set -e
PERMISSIONS_OK=0
if [ ! -r "$GF_PATHS_CONFIG" ]; then echo "GF_PATHS_CONFIG='$GF_PATHS_CONFIG' is not readable."; PERMISSIONS_OK=1; fi
if [ ! -w "$GF_PATHS_DATA" ]; then echo "GF_PATHS_DATA='$GF_PATHS_DATA' is not writable."; PERMISSIONS_OK=1; fi
if [ ! -r "$GF_PATHS_HOME" ]; then echo "GF_PATHS_HOME='$GF_PATHS_HOME' is not readable."; PERMISSIONS_OK=1; fi
if [ $PERMISSIONS_OK -eq 1 ]; then
    echo "You may have issues with file permissions, more information here: http://docs.grafana.org/installation/docker/#migrate-to-v51-or-later"
fi
[ -d "$GF_PATHS_PLUGINS" ] || mkdir "$GF_PATHS_PLUGINS"

for VAR_NAME in $(env | grep '^GF_[^=]\+__FILE=.\+' | sed -r "s/([^=]*)__FILE=.*/\1/g"); do
    eval VAR="\$$VAR_NAME"
    if [ "${VAR}" ]; then
        echo >&2 "ERROR: Both $VAR_NAME and ${VAR_NAME}__FILE are set (but are exclusive)"
        exit 1
    fi
    eval FILE="\$${VAR_NAME}__FILE"
    echo "Getting secret $VAR_NAME from ${FILE}"
    export "$VAR_NAME"="$(cat "${FILE}")"
    unset "${VAR_NAME}__FILE"
done

export HOME="$GF_PATHS_HOME"
exec grafana server --homepath="$GF_PATHS_HOME" --config="$GF_PATHS_CONFIG" --packaging=docker "$@" \
    cfg:default.log.mode="console" \
    cfg:default.paths.data="$GF_PATHS_DATA" \
    cfg:default.paths.logs="$GF_PATHS_LOGS" \
    cfg:default.paths.plugins="$GF_PATHS_PLUGINS" \
    cfg:default.paths.provisioning="$GF_PATHS_PROVISIONING"
