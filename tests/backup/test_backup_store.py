"""The BackupStore dynamic provider against moto's S3, in-process and over HTTP: every operation, twice
where it must be idempotent, drift made behind its back, and S3 errors naming bucket and operation."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import urllib.request

import boto3
import dill
import pytest
from moto import mock_aws
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc

from platform_infra.components.backup.component import BackupStore
from platform_infra.components.backup.model import BackupConfig
from platform_infra.components.backup.store import BackupStoreError, BackupStoreProvider, desired_settings
from platform_infra.components.spec import ComponentArgsError
from tests.backup.conftest import REGION, let_moto_write
from tests.conftest import deploy, registered
from tests.helpers import is_secret
from tests.live.store import ADMIN_POLICY, authenticate_after, enforce_iam

CONFIG = BackupConfig(bucket="platform-backups-test", region=REGION)


def props(endpoint: str | None, bucket: str = CONFIG.bucket) -> dict:
    return {"bucket": bucket, "region": REGION, "endpoint": endpoint, "expiry_days": CONFIG.expiry_days(),
            "noncurrent_days": CONFIG.noncurrent_days(), "abort_multipart_days": CONFIG.abort_multipart_days,
            "lock": {"mode": CONFIG.object_lock.mode, "days": CONFIG.lock_days()}}


def s3(endpoint: str | None):
    return boto3.client("s3", region_name=REGION, endpoint_url=endpoint)


def test_create_makes_a_private_versioned_encrypted_tls_only_bucket(s3_endpoint):
    provider = BackupStoreProvider()
    created = provider.create(props(s3_endpoint))
    client = s3(s3_endpoint)
    assert created.id == CONFIG.bucket
    assert client.get_bucket_versioning(Bucket=CONFIG.bucket)["Status"] == "Enabled"
    rule = client.get_bucket_encryption(Bucket=CONFIG.bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = client.get_public_access_block(Bucket=CONFIG.bucket)["PublicAccessBlockConfiguration"]
    assert block == {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                     "RestrictPublicBuckets": True}
    [statement] = json.loads(client.get_bucket_policy(Bucket=CONFIG.bucket)["Policy"])["Statement"]
    assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    rules = {r["Filter"]["Prefix"]: r for r in
             client.get_bucket_lifecycle_configuration(Bucket=CONFIG.bucket)["Rules"]}
    assert set(rules) == {"postgres/", "clickhouse/", "logs/", "config/"}
    # pgBackRest keeps 14 days; a daily full that the oldest incremental needs may be a day older.
    assert rules["postgres/"]["Expiration"]["Days"] == 14 + 2 + 1
    assert rules["clickhouse/"]["Expiration"]["Days"] > CONFIG.clickhouse_retention_days
    # Every version is locked for the shortest class's expiry (PostgreSQL's), and the lifecycle removes a
    # noncurrent version no earlier: it never meets a locked one.
    lock = client.get_object_lock_configuration(Bucket=CONFIG.bucket)["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"
    assert {**lock["Rule"]["DefaultRetention"], "Years": 0} == {"Mode": "COMPLIANCE", "Days": 17, "Years": 0}
    for rule in rules.values():
        assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 17 >= CONFIG.noncurrent_version_days
        assert rule["Expiration"]["Days"] >= 17
        assert rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 2
    # What create reports is what S3 has: the diff against the same wish is empty.
    assert provider.diff(created.id, created.outs, props(s3_endpoint)).changes is False


def as_the_engine_hands_them(values: dict) -> dict:
    """Inputs as the dynamic provider host deserializes them from the engine's request (pulumi/dynamic/__main__.py
    Create: rpc.deserialize_properties of a protobuf Struct): every number a float."""
    return rpc.deserialize_properties(asyncio.run(rpc.serialize_properties(values, {})))


def test_create_and_diff_take_the_numbers_the_engine_sends(s3_endpoint):
    provider = BackupStoreProvider()
    sent = as_the_engine_hands_them(props(s3_endpoint))
    assert isinstance(sent["noncurrent_days"], float)
    created = provider.create(sent)
    rules = s3(s3_endpoint).get_bucket_lifecycle_configuration(Bucket=CONFIG.bucket)["Rules"]
    assert {r["Filter"]["Prefix"]: r["Expiration"]["Days"] for r in rules} == CONFIG.expiry_days()
    stored = as_the_engine_hands_them(created.outs)
    assert provider.diff(created.id, stored, as_the_engine_hands_them(props(s3_endpoint))).changes is False


def test_create_update_and_read_are_idempotent(s3_endpoint):
    provider = BackupStoreProvider()
    first = provider.create(props(s3_endpoint))
    again = provider.create(props(s3_endpoint))
    assert again.outs == first.outs
    assert provider.update(first.id, first.outs, props(s3_endpoint)).outs == first.outs
    assert provider.read(first.id, first.outs).outs == first.outs


def test_read_detects_drift_and_update_repairs_it(s3_endpoint):
    provider = BackupStoreProvider()
    created = provider.create(props(s3_endpoint))
    client = s3(s3_endpoint)
    client.put_bucket_versioning(Bucket=CONFIG.bucket, VersioningConfiguration={"Status": "Suspended"})
    client.delete_bucket_lifecycle(Bucket=CONFIG.bucket)
    client.delete_bucket_policy(Bucket=CONFIG.bucket)

    drifted = provider.read(created.id, created.outs)
    assert drifted.outs["versioning"] == "Suspended"
    assert drifted.outs["lifecycle"] is None and drifted.outs["policy"] is None
    assert provider.diff(created.id, drifted.outs, props(s3_endpoint)).changes is True

    repaired = provider.update(created.id, drifted.outs, props(s3_endpoint))
    assert repaired.outs == created.outs
    assert provider.read(created.id, repaired.outs).outs == created.outs


def test_read_of_a_deleted_bucket_reports_it_gone(s3_endpoint):
    provider = BackupStoreProvider()
    created = provider.create(props(s3_endpoint))
    s3(s3_endpoint).delete_bucket(Bucket=CONFIG.bucket)
    assert provider.read(created.id, created.outs).id is None


def test_diff_replaces_on_another_bucket_and_updates_on_retention(s3_endpoint):
    provider = BackupStoreProvider()
    created = provider.create(props(s3_endpoint))
    renamed = provider.diff(created.id, created.outs, props(s3_endpoint, bucket="platform-backups-other"))
    assert renamed.replaces == ["bucket"]
    longer = {**props(s3_endpoint), "expiry_days": {**CONFIG.expiry_days(), "logs/": 800}}
    changed = provider.diff(created.id, created.outs, longer)
    assert changed.changes is True and not changed.replaces
    updated = provider.update(created.id, created.outs, longer)
    assert {r["ID"]: r["Expiration"]["Days"] for r in updated.outs["lifecycle"]}["expire-logs"] == 800


def test_delete_refuses_a_bucket_with_backups_and_is_idempotent(s3_endpoint):
    # Without the lock, which would keep the version below for its retention.
    provider = BackupStoreProvider()
    created = provider.create({**props(s3_endpoint), "lock": None})
    client = s3(s3_endpoint)
    let_moto_write(client, CONFIG.bucket)
    client.put_object(Bucket=CONFIG.bucket, Key="config/x.tar.enc", Body=b"x")
    with pytest.raises(BackupStoreError, match=f"delete_bucket on bucket {CONFIG.bucket}: the bucket still holds"):
        provider.delete(created.id, created.outs)
    for version in client.list_object_versions(Bucket=CONFIG.bucket).get("Versions", []):
        client.delete_object(Bucket=CONFIG.bucket, Key=version["Key"], VersionId=version["VersionId"])
    provider.delete(created.id, created.outs)
    provider.delete(created.id, created.outs)
    assert CONFIG.bucket not in [b["Name"] for b in client.list_buckets()["Buckets"]]


def test_s3_errors_name_the_bucket_and_operation(moto_server, aws_env, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(BackupStoreError, match=f"S3 create_bucket on bucket {CONFIG.bucket}: Unable to locate credentials"):
        BackupStoreProvider().create(props(moto_server))


def test_an_unreachable_endpoint_is_reported_with_bucket_and_operation(aws_env):
    with pytest.raises(BackupStoreError, match=f"S3 create_bucket on bucket {CONFIG.bucket}: Could not connect"):
        BackupStoreProvider().create(props("http://127.0.0.1:9"))


def test_bad_credentials_are_reported_with_bucket_and_operation(moto_server, aws_env):
    # moto checks credentials against its IAM once told to authenticate every request (a process-wide
    # setting, restored afterwards).
    def authenticate_after(count: bytes) -> None:
        urllib.request.urlopen(urllib.request.Request(
            f"{moto_server}/moto-api/reset-auth", data=count, headers={"Content-Type": "text/plain"}), timeout=10)

    authenticate_after(b"0")
    try:
        with pytest.raises(BackupStoreError, match=f"S3 create_bucket on bucket {CONFIG.bucket}: InvalidAccessKeyId"):
            BackupStoreProvider().create(props(moto_server))
    finally:
        authenticate_after(b"inf")


def test_stack_secret_credentials_win_over_the_environment(moto_server, aws_env, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    given = {"access_key_id": f"AKIA{secrets.token_hex(8).upper()}", "secret_access_key": secrets.token_hex(20)}
    created = BackupStoreProvider().create({**props(moto_server), **given})
    assert created.outs["versioning"] == "Enabled"


def test_the_provider_survives_pulumi_serialization():
    """Pulumi pickles the provider with dill into the state (as a secret) and runs it from there."""
    provider = dill.loads(base64.b64decode(serialize_provider(BackupStoreProvider())))
    assert type(provider).__name__ == "BackupStoreProvider"
    assert desired_settings(props(None))["versioning"] == "Enabled"


def test_component_keeps_credentials_secret_and_registers_the_bucket():
    def program():
        BackupStore("backups", {"config": CONFIG, "access_key_id": "AKIAEXAMPLEONLY0001",
                                "secret_access_key": secrets.token_hex(20)})

    run = deploy(program)
    [component] = registered(run, "platform:index:BackupStore")
    [bucket] = [r for r in run.resources if r.parent == component.urn and r.type.startswith("pulumi-python:dynamic")]
    assert bucket.type == "pulumi-python:dynamic/backup:BackupBucket"
    assert bucket.inputs["bucket"] == CONFIG.bucket
    assert is_secret(bucket.inputs["access_key_id"]) and is_secret(bucket.inputs["secret_access_key"])
    assert is_secret(bucket.inputs["__provider"])
    [cipher] = [r for r in run.resources if r.parent == component.urn and r.type.startswith("random:")]
    assert cipher.inputs["length"] == 64


def test_component_refuses_half_the_credentials():
    with pytest.raises(ComponentArgsError, match="give both access_key_id and secret_access_key"):
        BackupStore("backups", {"config": CONFIG, "access_key_id": "AKIAEXAMPLEONLY0001"})


def test_a_locked_version_outlives_a_delete_and_the_lock_drift_shows_in_read(s3_endpoint):
    provider = BackupStoreProvider()
    created = provider.create(props(s3_endpoint))
    client = s3(s3_endpoint)
    # Another default retention made behind the provider's back (moto changes it on an empty bucket only).
    client.put_object_lock_configuration(Bucket=CONFIG.bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    drifted = provider.read(created.id, created.outs)
    assert drifted.outs["object_lock"]["Rule"]["DefaultRetention"]["Days"] == 1
    assert provider.diff(created.id, drifted.outs, props(s3_endpoint)).changes is True
    repaired = provider.update(created.id, drifted.outs, props(s3_endpoint))
    assert repaired.outs == created.outs

    let_moto_write(client, CONFIG.bucket)
    version = client.put_object(Bucket=CONFIG.bucket, Key="postgres/backup.info", Body=b"x")["VersionId"]
    client.delete_object(Bucket=CONFIG.bucket, Key="postgres/backup.info")  # a delete marker: allowed
    with pytest.raises(client.exceptions.ClientError, match="AccessDenied"):
        client.delete_object(Bucket=CONFIG.bucket, Key="postgres/backup.info", VersionId=version,
                             BypassGovernanceRetention=True)
    assert client.get_object(Bucket=CONFIG.bucket, Key="postgres/backup.info", VersionId=version)["Body"].read() == b"x"


def test_the_lock_is_enabled_on_an_existing_versioned_bucket_and_never_dropped(s3_endpoint):
    client = s3(s3_endpoint)
    client.create_bucket(Bucket=CONFIG.bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    client.put_bucket_versioning(Bucket=CONFIG.bucket, VersioningConfiguration={"Status": "Enabled"})
    provider = BackupStoreProvider()
    created = provider.create(props(s3_endpoint))
    assert created.outs["object_lock"]["ObjectLockEnabled"] == "Enabled"
    with pytest.raises(BackupStoreError, match=f"bucket {CONFIG.bucket}: has Object Lock, which S3 never turns off"):
        provider.update(created.id, created.outs, {**props(s3_endpoint), "lock": None})


def test_a_store_without_object_lock_gets_none():
    unlocked = BackupConfig(bucket="platform-backups-test", object_lock=None)
    assert unlocked.lock_days() is None and unlocked.noncurrent_days() == unlocked.noncurrent_version_days
    with mock_aws():
        created = BackupStoreProvider().create({**props(None), "lock": None, "region": "us-east-1"})
    assert created.outs["object_lock"] is None


def test_the_provider_refuses_to_administer_the_bucket_with_the_jobs_key(moto_server, aws_env):
    with pytest.raises(BackupStoreError, match=f"bucket {CONFIG.bucket}: the backup jobs' key must not be the "
                                               "store's administrative key"):
        BackupStoreProvider().create({**props(moto_server), "job_access_key_id": aws_env["AWS_ACCESS_KEY_ID"]})
    given = {"access_key_id": f"AKIA{secrets.token_hex(8).upper()}", "secret_access_key": secrets.token_hex(20)}
    with pytest.raises(BackupStoreError, match="must not be the store's administrative key"):
        BackupStoreProvider().create({**props(moto_server), **given, "job_access_key_id": given["access_key_id"]})
    assert BackupStoreProvider().create({**props(moto_server), "job_access_key_id": "AKIAJOBSOWNKEY000001"}).id


def test_the_jobs_key_writes_and_reads_but_cannot_destroy_or_reconfigure(moto_server):
    """moto's server enforcing IAM (signatures; identity policies by action and resource; tests/live/store.py
    MOTO_OPERATIONS) with the jobs' user holding the job policy and the administrator s3:*. moto authorizes a
    version's delete as DeleteObject: the COMPLIANCE lock is what refuses it there; on AWS the policy does too."""
    admin_keys, job_keys = enforce_iam(moto_server, CONFIG.bucket)
    try:
        admin_props = {**props(moto_server), "access_key_id": admin_keys["aws_access_key_id"],
                       "secret_access_key": admin_keys["aws_secret_access_key"],
                       "job_access_key_id": job_keys["aws_access_key_id"]}
        created = BackupStoreProvider().create(admin_props)
        assert created.outs["object_lock"]["Rule"]["DefaultRetention"]["Mode"] == "COMPLIANCE"
        admin = boto3.client("s3", region_name=REGION, endpoint_url=moto_server, **admin_keys)
        job = boto3.client("s3", region_name=REGION, endpoint_url=moto_server, **job_keys)
        let_moto_write(admin, CONFIG.bucket)

        key = "postgres/backup/platform/backup.info"
        version = job.put_object(Bucket=CONFIG.bucket, Key=key, Body=b"backup")["VersionId"]
        assert job.get_object(Bucket=CONFIG.bucket, Key=key)["Body"].read() == b"backup"
        assert [item["Key"] for item in job.list_objects_v2(Bucket=CONFIG.bucket)["Contents"]] == [key]
        job.delete_objects(Bucket=CONFIG.bucket, Delete={"Objects": [{"Key": key}]})  # pgBackRest's expire: a marker

        def refused(client, call: str, **kwargs) -> int:
            """The HTTP status of the refusal (moto's refusal by the lock has no error body)."""
            with pytest.raises(client.exceptions.ClientError) as error:
                getattr(client, call)(Bucket=CONFIG.bucket, **kwargs)
            return error.value.response["ResponseMetadata"]["HTTPStatusCode"]

        purge = {"Rules": [{"ID": "purge", "Filter": {"Prefix": ""}, "Status": "Enabled",
                            "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}]}
        assert refused(job, "delete_object", Key=key, VersionId=version) == 403
        assert refused(job, "delete_object", Key=key, VersionId=version, BypassGovernanceRetention=True) == 403
        assert refused(job, "put_bucket_lifecycle_configuration", LifecycleConfiguration=purge) == 403
        assert refused(job, "delete_bucket_lifecycle") == 403
        assert refused(job, "put_bucket_policy", Policy="{}") == 403
        assert refused(job, "put_bucket_versioning", VersioningConfiguration={"Status": "Suspended"}) == 403
        assert refused(job, "put_object_lock_configuration", ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled"}) == 403
        assert job.get_object(Bucket=CONFIG.bucket, Key=key, VersionId=version)["Body"].read() == b"backup"

        # The administrative key can change the lifecycle (as the provider's update does)...
        admin.put_bucket_lifecycle_configuration(Bucket=CONFIG.bucket, LifecycleConfiguration=purge)
        updated = BackupStoreProvider().update(created.id, created.outs, admin_props)
        assert updated.outs["lifecycle"] == created.outs["lifecycle"]
        # ...and delete a version, but not one the COMPLIANCE lock holds: not even with the bypass.
        assert refused(admin, "delete_object", Key=key, VersionId=version, BypassGovernanceRetention=True) == 403
        # In GOVERNANCE mode the administrative key deletes a locked version, by bypassing the lock explicitly.
        governed = "platform-backups-governed"
        BackupStoreProvider().create({**admin_props, "bucket": governed,
                                      "lock": {"mode": "GOVERNANCE", "days": CONFIG.lock_days()}})
        let_moto_write(admin, governed)
        version = admin.put_object(Bucket=governed, Key=key, Body=b"backup")["VersionId"]
        with pytest.raises(admin.exceptions.ClientError):
            admin.delete_object(Bucket=governed, Key=key, VersionId=version)
        admin.delete_object(Bucket=governed, Key=key, VersionId=version, BypassGovernanceRetention=True)
        assert admin.list_object_versions(Bucket=governed).get("Versions", []) == []
    finally:
        authenticate_after(moto_server, b"inf")


def test_the_job_policys_deny_wins_over_a_broader_policy_on_the_same_user(moto_server):
    """Someone attaches s3:* to the jobs' user as well: its explicit Deny still refuses what would destroy or
    reconfigure (IAM: an explicit Deny overrides any Allow; moto evaluates it so)."""
    admin_keys, job_keys = enforce_iam(moto_server, CONFIG.bucket, job_extra=ADMIN_POLICY)
    try:
        BackupStoreProvider().create({**props(moto_server), "access_key_id": admin_keys["aws_access_key_id"],
                                      "secret_access_key": admin_keys["aws_secret_access_key"]})
        let_moto_write(boto3.client("s3", region_name=REGION, endpoint_url=moto_server, **admin_keys), CONFIG.bucket)
        job = boto3.client("s3", region_name=REGION, endpoint_url=moto_server, **job_keys)
        job.put_object(Bucket=CONFIG.bucket, Key="config/x", Body=b"x")
        for call, kwargs in (("delete_bucket_lifecycle", {}), ("delete_bucket_policy", {}),
                             ("put_bucket_versioning", {"VersioningConfiguration": {"Status": "Suspended"}}),
                             ("delete_bucket", {})):
            with pytest.raises(job.exceptions.ClientError) as error:
                getattr(job, call)(Bucket=CONFIG.bucket, **kwargs)
            assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403, call
    finally:
        authenticate_after(moto_server, b"inf")
