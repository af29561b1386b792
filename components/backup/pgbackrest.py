"""pgBackRest's configuration and PostgreSQL's archiving settings, rendered from the backup settings.

One renderer serves the stack's backup job, `infra backup now|drill` and the tests, so what CI restores
is what production writes. Credentials never enter the file: pgBackRest reads them from its environment
(PGBACKREST_REPO1_S3_KEY, PGBACKREST_REPO1_S3_KEY_SECRET, PGBACKREST_REPO1_CIPHER_PASS).
Option reference: https://pgbackrest.org/configuration.html (2.45, Debian bookworm).
"""

from __future__ import annotations

import configparser
import io
from dataclasses import dataclass
from urllib.parse import urlsplit

from platform_infra.components.backup.model import PREFIXES, BackupConfig, store_route

CONFIG_PATH = "/etc/pgbackrest/pgbackrest.conf"
CIPHER = "aes-256-cbc"


@dataclass(frozen=True)
class Cluster:
    """Where pgBackRest finds the PostgreSQL it backs up or restores into."""

    data_dir: str
    port: int = 5432
    socket_dir: str | None = None
    user: str | None = None
    """Database role pgBackRest logs in as (a superuser or one with the backup privileges)."""


def s3_location(config: BackupConfig, endpoint_url: str | None) -> dict[str, str]:
    """repo1-s3-* options: the bucket by virtual host under the store's endpoint, as the stack reaches it
    through its gateway (components/backup/gateway.py); or by path under `endpoint_url`, an S3-compatible
    endpoint a machine reaches directly (`infra backup` with AWS_ENDPOINT_URL)."""
    if not endpoint_url:
        route = store_route(config)
        return {"repo1-s3-endpoint": route.upstream_host,
                **({"repo1-storage-port": str(route.port)} if route.port != 443 else {})}
    parts = urlsplit(endpoint_url)
    if parts.scheme != "https":
        raise ValueError(f"S3 endpoint {endpoint_url!r}: pgBackRest reaches S3 only over https://")
    return {"repo1-s3-endpoint": parts.hostname or "", "repo1-s3-uri-style": "path",
            **({"repo1-storage-port": str(parts.port)} if parts.port else {})}


def render_pgbackrest_conf(config: BackupConfig, cluster: Cluster, *, endpoint_url: str | None = None,
                           ca_file: str | None = None, encrypted: bool = True) -> str:
    """pgbackrest.conf for the stanza of `config`, writing to the `postgres/` prefix of its bucket.

    Retention is by time (repo1-retention-full-type=time): whatever restores to any point of the last
    `postgres_retention_days` is kept, which the bucket's lifecycle expiry exceeds (BackupConfig.expiry_days).
    """
    repo = {
        "repo1-type": "s3",
        "repo1-path": "/" + PREFIXES["full"].rstrip("/"),
        "repo1-s3-bucket": config.bucket,
        "repo1-s3-region": config.region,
        **s3_location(config, endpoint_url),
        **({"repo1-storage-ca-file": ca_file} if ca_file else {}),
        "repo1-retention-full-type": "time",
        "repo1-retention-full": str(config.postgres_retention_days),
        **({"repo1-cipher-type": CIPHER} if encrypted else {}),
        "compress-type": "zst",
        "process-max": "2",
        "start-fast": "y",
        "log-level-console": "info",
        "log-level-file": "off",
    }
    stanza = {
        "pg1-path": cluster.data_dir,
        "pg1-port": str(cluster.port),
        **({"pg1-socket-path": cluster.socket_dir} if cluster.socket_dir else {}),
        **({"pg1-user": cluster.user} if cluster.user else {}),
    }
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # option names are case-sensitive for pgBackRest
    parser["global"] = repo
    parser[config.stanza] = stanza
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def render_pgbackrest_secrets(cipher_pass: str, s3_key: str | None = None, s3_key_secret: str | None = None) -> str:
    """The repository's credentials as a pgBackRest configuration file of their own, kept secret and read
    through `config-include-path` (pgBackRest takes these secure options from a file or its environment,
    never its command line), so no credential is an environment value of a container."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser["global"] = {"repo1-cipher-pass": cipher_pass,
                        **({"repo1-s3-key": s3_key, "repo1-s3-key-secret": s3_key_secret} if s3_key else {})}
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def archive_settings(config: BackupConfig, config_path: str = CONFIG_PATH,
                     include_path: str | None = None) -> dict[str, str]:
    """postgresql.conf settings that hand every WAL segment to pgBackRest (continuous archiving), and
    switch segments at least every minute so an idle database still bounds the RPO. `include_path` is the
    directory of the credentials file (render_pgbackrest_secrets).

    archive-push fails while the repository has no stanza, and PostgreSQL keeps every segment it could not
    archive until its volume is full. So the archiver creates the stanza itself when a push fails (a no-op
    for a stanza that exists) and pushes again: the stanza exists before the first segment is archived,
    whether or not the backup job has run, and whichever container starts first."""
    include = f" --config-include-path={include_path}" if include_path else ""
    pgbackrest = f"pgbackrest --config={config_path}{include} --stanza={config.stanza}"
    return {
        "wal_level": "replica",
        "archive_mode": "on",
        "archive_command": (f"{pgbackrest} archive-push %p || "
                            f"{{ {pgbackrest} stanza-create && {pgbackrest} archive-push %p; }}"),
        "archive_timeout": "60s",
    }
