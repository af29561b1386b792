"""The S3 client of the day-two commands (the backup store, the evidence store), from the standard AWS
environment: one place, so that `evidence` and `backup` share it without importing each other."""

from __future__ import annotations


def s3_client():
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client("s3", config=Config(retries={"max_attempts": 3, "mode": "standard"},
                                                               s3={"addressing_style": "path"}, connect_timeout=10))
