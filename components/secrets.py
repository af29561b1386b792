"""Platform credentials: supplied as config secrets, or generated; always Pulumi secrets."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import NotRequired, TypedDict

import pulumi
import pulumi_random as random

from platform_infra.components.spec import ComponentArgsError

ACCOUNT = r"[a-z]+:[a-z0-9-]+"
PASSWORD_LENGTH = 32
# 64 characters of key material: 512 bits of HMAC key, enough for HS256 up to HS512 (RFC 7518 §3.2).
JWT_SECRET_LENGTH = 64
CREDENTIALS = ("postgres_password", "kafka_password",
               "grafana_admin_password", "grafana_secret_key", "jwt_secret", "postgres_superuser_password",
               "postgres_exporter_password", "postgres_backup_password")


class SecretsArgs(TypedDict):
    rotation: int
    """Bump to regenerate every generated credential."""
    supplied: NotRequired[Mapping[str, pulumi.Input[str]]]
    """Credentials given by the operator (config secrets), by name from CREDENTIALS."""
    accounts: NotRequired[Sequence[str]]
    """One account per client of a store, as `store:client` (e.g. `redis:api-gateway`): a generated password
    each, in `Secrets.accounts`, rotating with the others."""


def validate_secrets_args(args: SecretsArgs) -> None:
    if not isinstance(args.get("rotation"), int) or args["rotation"] < 1:
        raise ComponentArgsError(f"Secrets: rotation must be an integer >= 1, got {args.get('rotation')!r}")
    bad = [account for account in args.get("accounts", ()) if not re.fullmatch(ACCOUNT, account)]
    if bad:
        raise ComponentArgsError(f"Secrets: accounts must be store:client names, got {bad}")
    unknown = set(args.get("supplied", {})) - set(CREDENTIALS)
    if unknown:
        raise ComponentArgsError(f"Secrets: supplied: unknown credentials {sorted(unknown)}; allowed: {CREDENTIALS}")


class Secrets(pulumi.ComponentResource):
    """One secret output per credential; generated ones rotate when `rotation` changes."""

    postgres_password: pulumi.Output[str]
    kafka_password: pulumi.Output[str]
    grafana_admin_password: pulumi.Output[str]
    grafana_secret_key: pulumi.Output[str]
    """Encrypts Grafana's stored datasource secrets; its built-in default is public."""
    jwt_secret: pulumi.Output[str]
    postgres_superuser_password: pulumi.Output[str]
    """PostgreSQL's superuser, for administration only; the services use postgres_password (their own role)."""
    postgres_exporter_password: pulumi.Output[str]
    postgres_backup_password: pulumi.Output[str]
    """The backup job's PostgreSQL role (pgBackRest's backup functions, no superuser)."""
    app_admin_password: pulumi.Output[str]
    """Always generated: the application's `admin` user, replacing the seed's well-known password."""
    app_admin_password_bcrypt: pulumi.Output[str]
    """Its bcrypt hash, the form the application's users table stores."""

    def __init__(self, name: str, args: SecretsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        validate_secrets_args(args)
        super().__init__("platform:index:Secrets", name, {}, opts)
        supplied = args.get("supplied", {})
        keepers = {"rotation": str(args["rotation"])}
        for credential in CREDENTIALS:
            if credential in supplied:
                value = pulumi.Output.secret(supplied[credential])
            else:
                length = JWT_SECRET_LENGTH if credential == "jwt_secret" else PASSWORD_LENGTH
                # Letters and digits only: these go into JDBC URLs, JAAS strings and config files unescaped.
                generated = random.RandomPassword(
                    f"{name}-{credential.replace('_', '-')}", length=length, special=False,
                    min_upper=2, min_lower=2, min_numeric=2, keepers=keepers,
                    opts=pulumi.ResourceOptions(parent=self),
                )
                value = pulumi.Output.secret(generated.result)
            setattr(self, credential, value)
        admin = random.RandomPassword(f"{name}-app-admin-password", length=PASSWORD_LENGTH, special=False,
                                      min_upper=2, min_lower=2, min_numeric=2, keepers=keepers,
                                      opts=pulumi.ResourceOptions(parent=self))
        self.accounts: dict[str, pulumi.Output[str]] = {}
        for account in args.get("accounts", ()):
            generated = random.RandomPassword(
                f"{name}-{account.replace(':', '-')}-password", length=PASSWORD_LENGTH, special=False,
                min_upper=2, min_lower=2, min_numeric=2, keepers=keepers, opts=pulumi.ResourceOptions(parent=self))
            self.accounts[account] = pulumi.Output.secret(generated.result)
        self.app_admin_password = pulumi.Output.secret(admin.result)
        self.app_admin_password_bcrypt = pulumi.Output.secret(admin.bcrypt_hash)
        self.register_outputs({**{credential: getattr(self, credential) for credential in CREDENTIALS},
                               "app_admin_password": self.app_admin_password,
                               "app_admin_password_bcrypt": self.app_admin_password_bcrypt})
