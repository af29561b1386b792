"""The backup store: an S3 (or S3-compatible) bucket managed with boto3 through a Pulumi dynamic provider.

The bucket is versioned, encrypted by default, closed to the public, refuses requests without TLS, locks every
version for the Object Lock retention and expires each backup class after the tool's own retention (never a
version before its lock ends). The provider uses the store's administrative key; the jobs get a key of their own,
allowed JOB_ALLOWED and refused JOB_DENIED (`job_key_policy`, the IAM policy of the jobs' user). `read` reports what the bucket really has, so
`pulumi refresh` shows drift made outside Pulumi and the next `up` puts it back.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult

from platform_infra.components.backup.model import JOB_KEY_IS_ADMIN

# Changing these means another bucket: replace, never edit in place.
IDENTITY = ("bucket", "region", "endpoint")
# What the bucket is made to have; `read` observes the same keys.
SETTINGS = ("versioning", "encryption", "public_access_block", "policy", "lifecycle", "object_lock")
CREDENTIAL_KEYS = ("access_key_id", "secret_access_key")
JOB_KEY = "job_access_key_id"
"""The jobs' key id, given to the provider only to refuse it as the administrative key."""

# What the jobs' key may do: write and read backups, list them, and place delete markers (pgBackRest's expire
# deletes by key, never by version: pgbackrest 2.45 src/storage/s3/storage.c storageS3PathRemoveInternal), which
# on a versioned bucket remove nothing: every version stays, locked, until the lifecycle's noncurrent expiry.
JOB_ALLOWED = {
    "object": ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
               "s3:ListMultipartUploadParts"),
    "bucket": ("s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:GetBucketLocation"),
}
# Denied explicitly, so no broader policy attached to the same user can grant them: destroying a version, lifting
# or shortening a lock, and changing what protects the bucket.
JOB_DENIED = (
    "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention", "s3:PutObjectRetention", "s3:PutObjectLegalHold",
    "s3:PutBucketObjectLockConfiguration", "s3:PutLifecycleConfiguration", "s3:PutBucketPolicy",
    "s3:DeleteBucketPolicy", "s3:PutBucketVersioning", "s3:PutEncryptionConfiguration",
    "s3:PutBucketPublicAccessBlock", "s3:DeleteBucket", "s3:CreateBucket",
)


class BackupStoreError(RuntimeError):
    """An S3 call failed; the message names the bucket and the operation."""


def tls_only_policy(bucket: str) -> dict[str, Any]:
    """Deny every request made without TLS (AWS: "Enforce encryption of data in transit",
    the aws:SecureTransport condition key)."""
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }],
    }


def _arns(bucket: str) -> dict[str, str]:
    return {"bucket": f"arn:aws:s3:::{bucket}", "object": f"arn:aws:s3:::{bucket}/*"}


def job_key_policy(bucket: str) -> dict[str, Any]:
    """The IAM policy of the backup jobs' user (AWS IAM "Policies and permissions in Amazon S3")."""
    arns = _arns(bucket)
    return {
        "Version": "2012-10-17",
        "Statement": [
            *[{"Sid": f"BackupJobs{scope.capitalize()}", "Effect": "Allow", "Action": list(actions),
               "Resource": arns[scope]} for scope, actions in JOB_ALLOWED.items()],
            {"Sid": "NeverDestroyOrReconfigure", "Effect": "Deny", "Action": list(JOB_DENIED),
             "Resource": list(arns.values())},
        ],
    }


def object_lock_configuration(mode: str, days: int) -> dict[str, Any]:
    """In the shape GetObjectLockConfiguration returns; days an integer again (see lifecycle_rules)."""
    return {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": mode, "Days": int(days)}}}


def lifecycle_rules(expiry_days: dict[str, int], noncurrent_days: int, abort_multipart_days: int) -> list[dict]:
    """One rule per prefix (backup class), in the shape GetBucketLifecycleConfiguration returns. Days are made
    integers again: the engine hands a dynamic provider every number as a float (protobuf Struct
    `number_value`; pulumi/dynamic/__main__.py Create -> pulumi/runtime/rpc.py deserialize_properties), which
    boto3's parameter validation refuses."""
    return [
        {
            "ID": f"expire-{prefix.rstrip('/')}",
            "Filter": {"Prefix": prefix},
            "Status": "Enabled",
            "Expiration": {"Days": int(days)},
            "NoncurrentVersionExpiration": {"NoncurrentDays": int(noncurrent_days)},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": int(abort_multipart_days)},
        }
        for prefix, days in sorted(expiry_days.items())
    ]


def desired_settings(props: dict[str, Any]) -> dict[str, Any]:
    bucket = props["bucket"]
    return {
        "versioning": "Enabled",
        "encryption": "AES256",
        "public_access_block": {key: True for key in
                                ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")},
        "policy": tls_only_policy(bucket),
        "lifecycle": lifecycle_rules(props["expiry_days"], props["noncurrent_days"], props["abort_multipart_days"]),
        "object_lock": object_lock_configuration(lock["mode"], lock["days"]) if (lock := props.get("lock")) else None,
    }


class _S3:
    """boto3 calls on one bucket, each failure turned into a BackupStoreError naming bucket and operation."""

    def __init__(self, props: dict[str, Any]) -> None:
        import boto3
        from botocore.config import Config

        self.bucket, self.region = props["bucket"], props["region"]
        # Credentials given as stack secrets win; otherwise boto3 reads the standard AWS environment.
        keys = {"aws_access_key_id": props.get("access_key_id"), "aws_secret_access_key": props.get("secret_access_key")}
        # A session of its own: boto3's default session caches whatever credentials it first found.
        self.session = boto3.session.Session(**{key: value for key, value in keys.items() if value})
        self.client = self.session.client(
            "s3", region_name=self.region, endpoint_url=props.get("endpoint") or None,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, s3={"addressing_style": "path"}))

    def refuse_job_key(self, job_key_id: str | None) -> None:
        """The administrative key (a stack secret or the AWS environment) is never the jobs' key: that key sits
        in three containers, and the administrator's can lift the lock and delete every version."""
        credentials = self.session.get_credentials()
        if job_key_id and credentials is not None and credentials.access_key == job_key_id:
            raise BackupStoreError(f"S3 bucket {self.bucket}: {JOB_KEY_IS_ADMIN}")

    def call(self, operation: str, missing_ok: tuple[str, ...] = (), **kwargs) -> dict[str, Any] | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in missing_ok:
                return None
            message = exc.response.get("Error", {}).get("Message", "")
            raise BackupStoreError(f"S3 {operation} on bucket {self.bucket}: {code}: {message}") from None
        except BotoCoreError as exc:
            raise BackupStoreError(f"S3 {operation} on bucket {self.bucket}: {exc}") from None

    def exists(self) -> bool:
        return self.call("head_bucket", missing_ok=("404", "NoSuchBucket")) is not None

    def create(self, object_lock: bool) -> None:
        location = {} if self.region == "us-east-1" else {
            "CreateBucketConfiguration": {"LocationConstraint": self.region}}
        self.call("create_bucket", missing_ok=("BucketAlreadyOwnedByYou",), ObjectLockEnabledForBucket=object_lock,
                  **location)

    def apply(self, settings: dict[str, Any]) -> None:
        """Every setting is a PUT of the whole value, so applying twice is the same as once.

        Object Lock comes after versioning, which it requires. S3 enables it on an existing versioned bucket with
        the same PutObjectLockConfiguration (AWS since 2023; moto 5 only on an empty bucket, s3/models.py
        put_object_lock_configuration), and never turns it off: a bucket that has it keeps it (checked in
        `BackupStoreProvider.update`)."""
        self.call("put_bucket_versioning", VersioningConfiguration={"Status": settings["versioning"]})
        if settings["object_lock"] and self.observe_lock() != settings["object_lock"]:
            self.call("put_object_lock_configuration", ObjectLockConfiguration=settings["object_lock"])
        self.call("put_bucket_encryption", ServerSideEncryptionConfiguration={"Rules": [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": settings["encryption"]}}]})
        self.call("put_public_access_block", PublicAccessBlockConfiguration=settings["public_access_block"])
        self.call("put_bucket_policy", Policy=json.dumps(settings["policy"]))
        self.call("put_bucket_lifecycle_configuration", LifecycleConfiguration={"Rules": settings["lifecycle"]})

    def observe_lock(self) -> dict[str, Any] | None:
        lock = self.call("get_object_lock_configuration", missing_ok=("ObjectLockConfigurationNotFoundError",))
        config = (lock or {}).get("ObjectLockConfiguration")
        if config and "Rule" in config:
            # Days or Years, whichever is set (moto reports the other as 0).
            retention = config["Rule"]["DefaultRetention"]
            config = {**config, "Rule": {"DefaultRetention": {k: v for k, v in retention.items() if v}}}
        return config

    def observe(self) -> dict[str, Any]:
        """The bucket's settings as S3 reports them (None where one is missing)."""
        missing = ("NoSuchBucketPolicy", "NoSuchLifecycleConfiguration", "NoSuchPublicAccessBlockConfiguration",
                   "ServerSideEncryptionConfigurationNotFoundError")
        versioning = self.call("get_bucket_versioning") or {}
        encryption = self.call("get_bucket_encryption", missing_ok=missing)
        block = self.call("get_public_access_block", missing_ok=missing)
        policy = self.call("get_bucket_policy", missing_ok=missing)
        lifecycle = self.call("get_bucket_lifecycle_configuration", missing_ok=missing)
        rules = (encryption or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
        return {
            "versioning": versioning.get("Status"),
            "encryption": rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] if rules else None,
            "public_access_block": (block or {}).get("PublicAccessBlockConfiguration"),
            "policy": json.loads(policy["Policy"]) if policy else None,
            "lifecycle": sorted((lifecycle or {}).get("Rules", []), key=lambda rule: rule.get("ID", "")) or None,
            "object_lock": self.observe_lock(),
        }

    def delete(self) -> None:
        listing = self.call("list_object_versions", MaxKeys=1, missing_ok=("NoSuchBucket",))
        if listing is None:
            return
        if listing.get("Versions") or listing.get("DeleteMarkers"):
            raise BackupStoreError(f"S3 delete_bucket on bucket {self.bucket}: the bucket still holds backups; "
                                   "empty it deliberately (every version) before deleting the store")
        self.call("delete_bucket", missing_ok=("NoSuchBucket",))


def _outs(props: dict[str, Any], observed: dict[str, Any]) -> dict[str, Any]:
    return {**{key: value for key, value in props.items() if key != "__provider"}, **observed}


class BackupStoreProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        s3 = _S3(props)
        s3.refuse_job_key(props.get(JOB_KEY))
        wanted = desired_settings(props)
        s3.create(object_lock=wanted["object_lock"] is not None)
        s3.apply(wanted)
        return CreateResult(props["bucket"], _outs(props, s3.observe()))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        s3 = _S3({**props, "bucket": id_})
        if not s3.exists():
            return ReadResult(None, {})
        return ReadResult(id_, _outs(props, s3.observe()))

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """Compares what the bucket had when last created, updated or refreshed with what is wanted."""
        replaces = [key for key in IDENTITY if olds.get(key) != news.get(key)]
        wanted = desired_settings(news)
        changed = [key for key in SETTINGS if olds.get(key) != wanted[key]]
        changed += [key for key in ("expiry_days", "noncurrent_days", "abort_multipart_days", "lock",
                                    *CREDENTIAL_KEYS, JOB_KEY) if olds.get(key) != news.get(key)]
        return DiffResult(changes=bool(replaces or changed), replaces=replaces, delete_before_replace=False)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        s3 = _S3(news)
        s3.refuse_job_key(news.get(JOB_KEY))
        wanted = desired_settings(news)
        if wanted["object_lock"] is None and s3.observe_lock():
            raise BackupStoreError(f"S3 bucket {id_}: has Object Lock, which S3 never "
                                   "turns off; keep backups.object_lock, or move the backups to another bucket")
        s3.apply(wanted)
        return UpdateResult(_outs(news, s3.observe()))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        _S3({**props, "bucket": id_}).delete()


class BackupBucket(Resource, module="backup", name="BackupBucket"):
    """The dynamic resource; use the BackupStore component."""

    bucket: pulumi.Output[str]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(BackupStoreProvider(), name, {**props, **{key: None for key in SETTINGS}}, opts)
