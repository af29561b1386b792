"""Command-line flags and environment of the monitoring containers, with the secure choices made."""

from .model import MonitoringConfig


def prometheus_args(config: MonitoringConfig, *, config_file: str, storage_path: str) -> list[str]:
    """Prometheus flags. The admin API (TSDB delete/snapshot) and the lifecycle API (remote
    reload/quit) stay off because they are only enabled by flags that are never passed here;
    a changed config is picked up by replacing the container.
    """
    return [
        f"--config.file={config_file}",
        f"--storage.tsdb.path={storage_path}",
        f"--storage.tsdb.retention.time={config.retention_time}",
        f"--storage.tsdb.retention.size={config.retention_size}",
    ]


def alertmanager_args(*, config_file: str, storage_path: str) -> list[str]:
    """Alertmanager flags for a single instance: an empty cluster address turns off the gossip
    listener (port 9094), which would otherwise accept cluster peers without authentication.
    """
    return [f"--config.file={config_file}", f"--storage.path={storage_path}", "--cluster.listen-address="]


def grafana_environment(*, root_url: str, admin_password_file: str, secret_key_file: str) -> dict[str, str]:
    """Grafana settings (GF_<SECTION>_<KEY>). Secrets come from files (the image's `__FILE`
    suffix), so they are not visible in `docker inspect`.
    """
    if not root_url.startswith("https://"):
        raise ValueError(f"root_url {root_url!r}: Grafana must be served over https:// (secure cookies)")
    return {
        "GF_SERVER_ROOT_URL": root_url,
        "GF_SECURITY_ADMIN_PASSWORD__FILE": admin_password_file,
        # The built-in default secret key is public; it encrypts datasource secrets.
        "GF_SECURITY_SECRET_KEY__FILE": secret_key_file,
        "GF_SECURITY_COOKIE_SECURE": "true",
        "GF_SECURITY_COOKIE_SAMESITE": "strict",
        "GF_SECURITY_STRICT_TRANSPORT_SECURITY": "true",
        "GF_SECURITY_CONTENT_SECURITY_POLICY": "true",
        "GF_SECURITY_DISABLE_GRAVATAR": "true",
        "GF_AUTH_ANONYMOUS_ENABLED": "false",
        "GF_USERS_ALLOW_SIGN_UP": "false",
        "GF_USERS_ALLOW_ORG_CREATE": "false",
        # The stack runs without internet access from Grafana.
        "GF_ANALYTICS_REPORTING_ENABLED": "false",
        "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
        "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES": "false",
    }


def grafana_start_command(*, admin_password_file: str, run_script: str = "/run.sh") -> list[str]:
    """Entrypoint that resets the admin password from its file at every start, then runs the image's own
    start script. Grafana applies GF_SECURITY_ADMIN_PASSWORD only when it creates the admin user on the
    first start, so a rotated password would otherwise never reach it. The password goes through stdin,
    never argv; on the first start there is no admin user yet and the reset fails harmlessly."""
    reset = ('grafana cli --homepath "$GF_PATHS_HOME" --config "$GF_PATHS_CONFIG" '
             f'admin reset-admin-password --password-from-stdin < {admin_password_file} >/dev/null 2>&1 '
             '&& echo "platform: Grafana admin password applied" '
             '|| echo "platform: no Grafana admin user yet; it is created from the password file"')
    return ["/bin/sh", "-c", f'{reset}; exec {run_script} "$@"', "grafana-start"]
