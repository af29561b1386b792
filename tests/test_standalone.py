"""The repository stands alone: no tracked file reads or cites a path outside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# Documents that live beside the repository in some checkouts and never travel with a clone.
OUTSIDE_DOCUMENTS = re.compile(r"\b(?:ops|rules|production-checklist)\.md\b")
RELATIVE_PATH = re.compile(r"(?<![\w./])\.\./[\w./-]*")
ABSOLUTE_HOME = re.compile(r"(?<![\w.])/(?:work|home|Users)/[\w.-]+")


def tracked_text_files() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, check=True, capture_output=True, text=True
    ).stdout.split("\0")
    files = []
    for name in filter(None, names):
        path = REPO_ROOT / name
        try:
            path.read_text()
        except (UnicodeDecodeError, FileNotFoundError):
            continue
        files.append(path)
    return files


def references_outside(path: Path, root: Path = REPO_ROOT) -> list[str]:
    text = path.read_text()
    found = [m.group(0) for m in OUTSIDE_DOCUMENTS.finditer(text)]
    found += [m.group(0) for m in ABSOLUTE_HOME.finditer(text)]
    for match in RELATIVE_PATH.finditer(text):
        target = (path.parent / match.group(0)).resolve()
        if not target.is_relative_to(root):
            found.append(match.group(0))
    return found


def test_no_tracked_file_refers_outside_the_repository():
    files = tracked_text_files()
    assert len(files) > 50
    offenders = {str(p.relative_to(REPO_ROOT)): refs for p in files if (refs := references_outside(p))}
    assert offenders == {}


def test_the_check_finds_each_kind_of_outside_reference(tmp_path):
    doc = tmp_path / "docs" / "x.md"
    doc.parent.mkdir()
    # Built from pieces so that this file does not itself cite them.
    for text in ("see " + "../" * 2 + "shared/list.txt", "as " + "ops" + ".md says", "in " + "/work" + "/shared/x"):
        doc.write_text(text)
        assert references_outside(doc, tmp_path), text
    doc.write_text("see ../README.md and https://example.com/a/../b")
    assert references_outside(doc, tmp_path) == []
