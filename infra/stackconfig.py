"""Read the stack's config from the Pulumi runtime, once, into typed settings and supplied secrets."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pulumi
from pulumi.runtime import rpc
from pulumi.runtime.config import CONFIG, get_config_env, get_config_secret_keys_env, is_config_secret
from pydantic import ValidationError

from platform_infra.components.backup.model import JOB_KEY_IS_ADMIN, StoreKeys
from platform_infra.infra.settings import (
    NAMESPACE,
    SECRET_KEYS,
    SETTINGS_KEY,
    Settings,
    SettingsError,
    check_config_keys,
    parse_settings,
)

WEAK_VALUES = {"admin", "admin123", "password", "postgres", "changeme", "change-me", "secret", "123456", "example",
               "mysecretpassword", "dev-secret-change-me", "change-me-in-production", "your-256-bit-secret"}
MIN_PASSWORD_LENGTH = 16
MIN_JWT_BYTES = 32


@dataclass(frozen=True)
class StackInputs:
    settings: Settings
    secrets: dict[str, pulumi.Output[str]]
    """Credentials the operator supplied, by component attribute name (see SECRET_KEYS)."""


def _unknown_secret() -> pulumi.Output[str]:
    """A value that is not known before deployment, as an encrypted config value is to the offline runner."""
    loop = asyncio.get_running_loop()

    def resolved(value):
        future = loop.create_future()
        future.set_result(value)
        return future

    return pulumi.Output(set(), resolved(None), resolved(False), resolved(True))


def check_secret_value(key: str, value: str, source: str) -> None:
    if key == "registryUsername":
        # HTTP basic auth: a user name holds no colon; registries' robot names may hold `$` or `+`.
        if not value or any(c.isspace() or c == ":" for c in value):
            raise SettingsError(f"{source}: {NAMESPACE}:{key}: must be a registry user name (no space, no colon)")
        return
    if key == "alertSlackWebhookUrl":
        if not value.startswith("https://"):
            raise SettingsError(f"{source}: {NAMESPACE}:{key}: must be an https:// webhook URL")
        return
    if key in ("tlsCertificate", "tlsPrivateKey"):
        if "-----BEGIN " not in value:
            raise SettingsError(f"{source}: {NAMESPACE}:{key}: must be PEM text")
        return
    if value.strip().lower() in WEAK_VALUES or len(set(value)) < 4:
        raise SettingsError(f"{source}: {NAMESPACE}:{key}: is a default or weak value; set a random one")
    minimum = MIN_JWT_BYTES if key == "jwtSecret" else MIN_PASSWORD_LENGTH
    if len(value.encode()) < minimum:
        raise SettingsError(f"{source}: {NAMESPACE}:{key}: must be at least {minimum} bytes"
                            + (" (256 bits for HS256)" if key == "jwtSecret" else ""))


def check_store_keys(admin_key_id: str | None, job_key_id: str | None, source: str) -> None:
    """The backup jobs' key is never the store's administrative key (components/backup/model.py StoreKeys). A
    value the offline runner does not know (rpc.UNKNOWN) is compared by the provider at `up` instead."""
    if rpc.UNKNOWN in (admin_key_id, job_key_id):
        return
    try:
        StoreKeys(admin_access_key_id=admin_key_id, job_access_key_id=job_key_id)
    except ValidationError:
        raise SettingsError(f"{source}: {NAMESPACE}:backupAccessKeyId: {JOB_KEY_IS_ADMIN} "
                            f"({NAMESPACE}:backupAdminAccessKeyId)") from None


def load_stack_inputs() -> StackInputs:
    """Validate the whole stack config before the program registers anything; SettingsError otherwise."""
    source = f"Pulumi.{pulumi.get_stack()}.yaml"
    keys = set(get_config_env()) | set(CONFIG.get())
    secure = set(get_config_secret_keys_env()) | {key for key in keys if is_config_secret(key)}
    check_config_keys(keys, secure, source)
    config = pulumi.Config(NAMESPACE)
    raw = config.get_object(SETTINGS_KEY)
    if raw is None:
        raise SettingsError(f"{source}: {NAMESPACE}:{SETTINGS_KEY}: required key is missing")
    settings = parse_settings(raw, source)
    secrets: dict[str, pulumi.Output[str]] = {}
    for key, attribute in SECRET_KEYS.items():
        value = config.get(key)
        if value is None:
            continue
        if value == rpc.UNKNOWN:
            secrets[attribute] = _unknown_secret()
            continue
        check_secret_value(key, value, source)
        secrets[attribute] = pulumi.Output.secret(value)
    login = {"registry_username", "registry_password"} & set(secrets)
    if len(login) == 1:
        raise SettingsError(f"{source}: {NAMESPACE}:registryUsername and {NAMESPACE}:registryPassword: set both "
                            f"(the login for {settings.registry_host}) or neither")
    check_store_keys(config.get("backupAdminAccessKeyId"), config.get("backupAccessKeyId"), source)
    if settings.tls.mode == "provided" and not {"tls_certificate", "tls_private_key"} <= set(secrets):
        raise SettingsError(f"{source}: {NAMESPACE}:{SETTINGS_KEY}.tls.mode: provided needs the config secrets "
                            f"{NAMESPACE}:tlsCertificate and {NAMESPACE}:tlsPrivateKey")
    return StackInputs(settings, secrets)
