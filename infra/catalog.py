"""The production checklist as the project's own data: infra/checklist.yaml, validated once on load.

Each line has a stable id (rules and reports name it), its section and how it is covered: policy rules,
components that provide it when deployed, tests of this repository that prove it, or a runbook step; a
run-time line (a freshness) only by evidence records: those that check it by id, or the record kinds it names.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from platform_infra.components.monitoring.model import Duration

CATALOG_FILE = Path(__file__).with_name("checklist.yaml")

ItemId = Annotated[str, StringConstraints(pattern=r"^[a-z]+(\.[a-z0-9]+(-[a-z0-9]+)*)+$")]
RuleId = Annotated[str, StringConstraints(pattern=r"^[A-Z]+(-[A-Z]+)?-\d{3}$")]
TestId = Annotated[str, StringConstraints(pattern=r"^tests/[\w/]+\.py::test_\w+$")]
RunbookRef = Annotated[str, StringConstraints(pattern=r"^docs/RUNBOOK\.md#[a-z0-9-]+$")]
RecordKind = Annotated[str, StringConstraints(pattern=r"^[a-z]+\.[a-z]+$|^verify$")]


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: ItemId
    text: str = Field(min_length=1)
    rules: tuple[RuleId, ...] = ()
    components: tuple[str, ...] = ()
    tests: tuple[TestId, ...] = ()
    runbook: RunbookRef | None = None
    freshness: Duration | None = None
    """A run-time line: only an evidence record (infra/daytwo/evidence.py) younger than this proves it."""
    records: tuple[RecordKind, ...] = ()
    """Record kinds whose run is itself the proof (`drill.backup`, `backup.restore`): the newest such record
    verifies the line when it succeeded and fails it when not, besides any record that checks the line by id."""
    stack: str | None = None
    """The stack whose `records` prove the line when it is not the one checked: `staging` for the release
    verified there before prod."""
    signoff: str | None = None
    """Who signs the line off when a person does it (default: its section's)."""

    @model_validator(mode="after")
    def _covered(self) -> Item:
        if not (self.rules or self.components or self.tests or self.runbook):
            raise ValueError(f"{self.id}: no coverage; name rules, components, tests or a runbook step")
        if self.records and not self.freshness:
            raise ValueError(f"{self.id}: records prove a run-time line; give it a freshness")
        if self.stack and not self.records:
            raise ValueError(f"{self.id}: stack names whose records prove the line; name the record kinds")
        return self


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    phase: str = Field(min_length=1)
    signoff: str | None = None
    """The sign-off role (one of `sign_off`) who signs this section's manual lines (default: the first)."""
    items: tuple[Item, ...] = Field(min_length=1)


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sections: tuple[Section, ...] = Field(min_length=1)
    sign_off: tuple[str, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Catalog:
        seen: set[str] = set()
        for section in self.sections:
            for item in section.items:
                if item.id in seen:
                    raise ValueError(f"checklist id {item.id} appears twice")
                seen.add(item.id)
            for role in {r for r in (section.signoff, *(i.signoff for i in section.items)) if r}:
                if role not in self.sign_off:
                    raise ValueError(f"{section.name}: sign-off role {role!r} is not one of {list(self.sign_off)}")
        return self

    def lines(self) -> list[tuple[Section, Item]]:
        return [(section, item) for section in self.sections for item in section.items]

    def by_id(self) -> dict[str, Item]:
        return {item.id: item for _, item in self.lines()}

    def other_stacks(self) -> set[str]:
        """The stacks whose records some line reads besides the checked one's."""
        return {item.stack for _, item in self.lines() if item.stack}


class CatalogError(ValueError):
    pass


def parse(text: str, source: str = str(CATALOG_FILE.name)) -> Catalog:
    try:
        # libyaml's loader: the catalog is read by every `infra check` and the pure-Python one takes ~0.1 s.
        return Catalog.model_validate(yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    except (yaml.YAMLError, ValidationError) as error:
        raise CatalogError(f"{source}: {error}") from None


@cache
def load() -> Catalog:
    return parse(CATALOG_FILE.read_text())


def heading_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces as dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


REPO_ROOT = CATALOG_FILE.parent.parent


def component_type(name: str) -> str:
    return f"platform:index:{name}"


def named_test_exists(test_id: str, root: Path = REPO_ROOT) -> bool:
    """A `tests/<file>.py::<function>` names a module-level test function of this repository."""
    path, _, function = test_id.partition("::")
    file = root / path
    if not file.is_file():
        return False
    tree = ast.parse(file.read_text())
    return any(isinstance(node, ast.FunctionDef) and node.name == function for node in tree.body)


def runbook_anchors(root: Path = REPO_ROOT) -> set[str]:
    """`docs/RUNBOOK.md#<anchor>` of every heading of the runbook."""
    runbook = root / "docs" / "RUNBOOK.md"
    if not runbook.is_file():
        return set()
    headings = re.findall(r"^#{1,6} (.+)$", runbook.read_text(), re.MULTILINE)
    return {f"docs/RUNBOOK.md#{heading_anchor(h)}" for h in headings}
