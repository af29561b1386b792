"""Evidence records: what `infra verify` (and later each drill) saw on the running stack, dated, in a store.

One module owns the record's shape and where records live:
- a record is JSON: `{"kind", "stack", "created_at", "commit", "ok", "checks": [{"id", "status", ...}], "data"}`,
  each check's `id` a line of the checklist catalog (infra/checklist.yaml), its status pass, fail or unknown;
- the store is the stack's backup bucket under `evidence/<stack>/` when the stack has one (reached with the
  standard AWS environment, as `infra backup` is), a directory otherwise (`.evidence/<stack>/` beside the
  stack file, or one the policy config names for the prod gate).
`infra checklist` and the prod gate (policy EVD-001) read the newest record of each line from here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

EVIDENCE_PREFIX = "evidence/"
KINDS = ("verify", "drill.alerts", "drill.failover", "drill.load", "drill.backup", "backup.restore",
         "autoscale.review")
"""Who writes records: `infra verify`, the drills, the backup drill, `infra backup restore` and `infra autoscale
review`."""


class EvidenceError(RuntimeError):
    """The store cannot be read or written."""


class Check(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    section: str = ""
    text: str = ""
    status: Literal["pass", "fail", "unknown"]
    value: Any = None
    threshold: Any = None
    evidence: str = ""


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal[KINDS]  # type: ignore[valid-type]
    stack: str = Field(min_length=1)
    created_at: datetime
    commit: str | None = None
    ok: bool
    checks: list[Check] = []
    data: dict[str, Any] = {}

    @property
    def name(self) -> str:
        """The object's name in the store: sortable by time, then kind."""
        return f"{self.created_at.astimezone(UTC):%Y%m%dT%H%M%SZ}-{self.kind}.json"

    def age_seconds(self, now: datetime) -> float:
        return (now - self.created_at).total_seconds()


def parse(text: str, source: str) -> Record:
    try:
        return Record.model_validate_json(text)
    except ValidationError as error:
        raise EvidenceError(f"{source}: not an evidence record: {error.errors()[0]['msg']}") from None


class Store(Protocol):
    location: str

    def write(self, record: Record) -> str: ...

    def records(self) -> list[Record]: ...


@dataclass
class DirectoryStore:
    directory: Path

    @property
    def location(self) -> str:
        return str(self.directory)

    def write(self, record: Record) -> str:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / record.name
            path.write_text(record.model_dump_json(indent=2) + "\n")
        except OSError as error:
            raise EvidenceError(f"evidence store {self.directory}: {error.strerror or error}") from None
        return str(path)

    def records(self) -> list[Record]:
        if not self.directory.exists():
            return []
        try:
            files = sorted(self.directory.glob("*.json"))
            return [parse(f.read_text(), str(f)) for f in files]
        except OSError as error:
            raise EvidenceError(f"evidence store {self.directory}: {error.strerror or error}") from None


@dataclass
class BucketStore:
    """The stack's backup bucket, under `evidence/<stack>/`; `client` is a boto3 S3 client."""

    bucket: str
    prefix: str
    client: Any = field(default=None, repr=False)

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _client(self) -> Any:
        if self.client is None:
            from platform_infra.infra.daytwo.s3 import s3_client

            self.client = s3_client()
        return self.client

    def write(self, record: Record) -> str:
        key = self.prefix + record.name
        try:
            self._client().put_object(Bucket=self.bucket, Key=key, Body=record.model_dump_json(indent=2).encode(),
                                      ContentType="application/json")
        except Exception as error:  # noqa: BLE001 botocore raises many kinds; all mean the store failed
            raise EvidenceError(f"evidence store {self.location}: {error}") from None
        return f"s3://{self.bucket}/{key}"

    def records(self) -> list[Record]:
        try:
            client = self._client()
            keys = [item["Key"] for page in client.get_paginator("list_objects_v2").paginate(
                        Bucket=self.bucket, Prefix=self.prefix) for item in page.get("Contents", [])
                    if item["Key"].endswith(".json")]
            return [parse(client.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode(),
                          f"s3://{self.bucket}/{key}") for key in sorted(keys)]
        except EvidenceError:
            raise
        except Exception as error:  # noqa: BLE001 as above
            raise EvidenceError(f"evidence store {self.location}: {error}") from None


def store_for(stack: str, bucket: str | None, project_dir: Path) -> Store:
    """Where a stack's evidence lives: its backup bucket when it has one, else `.evidence/<stack>/` beside its
    stack file."""
    if bucket:
        return BucketStore(bucket, f"{EVIDENCE_PREFIX}{stack}/")
    return DirectoryStore(project_dir / ".evidence" / stack)


def newest(records: list[Record], stack: str, kind: str, ok: bool | None = None) -> Record | None:
    matching = [r for r in records if r.stack == stack and r.kind == kind and (ok is None or r.ok == ok)]
    return max(matching, key=lambda r: r.created_at, default=None)


def now() -> datetime:
    return datetime.now(UTC)


def to_json(record: Record) -> dict[str, Any]:
    return json.loads(record.model_dump_json())
