"""The BackupStore component: the dynamic bucket resource under a `platform:index:BackupStore`."""

from __future__ import annotations

from typing import NotRequired, TypedDict

import pulumi
import pulumi_random as random

from platform_infra.components.backup.model import BackupConfig
from platform_infra.components.backup.store import CREDENTIAL_KEYS, JOB_KEY, BackupBucket
from platform_infra.components.spec import ComponentArgsError


class BackupStoreArgs(TypedDict):
    config: BackupConfig
    access_key_id: NotRequired[pulumi.Input[str]]
    """The store's administrative key, with secret_access_key: stack secrets; omitted, the standard AWS
    environment of the deploying machine. Never the jobs' key."""
    secret_access_key: NotRequired[pulumi.Input[str]]
    job_access_key_id: NotRequired[pulumi.Input[str]]
    """The jobs' key id: the provider refuses to administer the bucket with it."""


class BackupStore(pulumi.ComponentResource):
    """A versioned, encrypted, private, TLS-only, object-locked bucket with a lifecycle rule per backup class."""

    bucket: pulumi.Output[str]
    cipher_pass: pulumi.Output[str]
    """Encrypts what the jobs write (pgBackRest's repository, the archives); a secret kept in the stack."""

    def __init__(self, name: str, args: BackupStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        config = args.get("config")
        if not isinstance(config, BackupConfig):
            raise ComponentArgsError(f"BackupStore: config must be a BackupConfig, got {type(config).__name__}")
        given = [key for key in CREDENTIAL_KEYS if args.get(key) is not None]
        if given and len(given) != len(CREDENTIAL_KEYS):
            raise ComponentArgsError(f"BackupStore: give both {' and '.join(CREDENTIAL_KEYS)} or neither "
                                     "(then the AWS environment is used)")
        super().__init__("platform:index:BackupStore", name, {}, opts)
        props = {
            "bucket": config.bucket, "region": config.region, "endpoint": config.endpoint,
            "expiry_days": config.expiry_days(), "noncurrent_days": config.noncurrent_days(),
            "abort_multipart_days": config.abort_multipart_days,
            "lock": {"mode": config.object_lock.mode, "days": config.lock_days()} if config.object_lock
            else None,
            **{key: pulumi.Output.secret(args[key]) for key in (*given, JOB_KEY) if args.get(key) is not None},
        }
        resource = BackupBucket(name, props, pulumi.ResourceOptions(
            parent=self, additional_secret_outputs=[*CREDENTIAL_KEYS, JOB_KEY]))
        self.bucket = resource.bucket
        self.cipher_pass = pulumi.Output.secret(random.RandomPassword(
            f"{name}-cipher-pass", length=64, special=False, opts=pulumi.ResourceOptions(parent=self)).result)
        self.register_outputs({"bucket": self.bucket, "cipher_pass": self.cipher_pass})
