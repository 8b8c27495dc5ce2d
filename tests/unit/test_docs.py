"""The documentation stands on its own: its links, paths and test names point at what is in the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", ROOT / "RELIABILITY.md", *(ROOT / "docs").glob("*.md")])
LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE = re.compile(r"`([A-Za-z0-9_./-]+\.(?:py|md|yaml|yml|sql|json|toml))(?:::([A-Za-z0-9_]+))?`")
TOP_LEVEL = ("schemas/", "handlers/", "streams/", "tests/", "deploy/", "docs/", "rules/")


def _slug(heading: str) -> str:
    """The anchor a Markdown renderer (GitHub's rules) gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(line.lstrip("#")) for line in path.read_text("utf-8").splitlines() if line.startswith("#")}


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_relative_links_and_their_anchors_resolve(doc: Path) -> None:
    broken = []
    for target in LINK.findall(doc.read_text("utf-8")):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (doc.parent / file_part).resolve() if file_part else doc
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {_name(linked)}")
    assert not broken, broken


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_named_files_and_tests_exist(doc: Path) -> None:
    missing = []
    for path, test in CODE.findall(doc.read_text("utf-8")):
        if "NNNN" in path:
            continue  # a pattern (migrations/NNNN_name.sql), not a file
        if path.startswith(TOP_LEVEL):
            candidates = [ROOT / path]
        elif path.startswith("test_"):
            candidates = sorted((ROOT / "tests").rglob(path))
        else:
            continue  # a file name inside a folder the text names (e.g. worker.yaml in deploy/k8s)
        found = [c for c in candidates if c.exists()]
        if not found:
            missing.append(path)
        elif test and not any(re.search(rf"def {test}\(", c.read_text("utf-8")) for c in found):
            missing.append(f"{path}::{test}")
    assert not missing, f"{_name(doc)} names what is not in the repository: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_no_reference_to_a_document_outside_the_repository(doc: Path) -> None:
    text = doc.read_text("utf-8")
    assert not re.search(r"\bSPEC\b|§|the specification", text), "describe the behaviour here, or link docs/"


SOURCES = sorted(p for top in ("schemas", "handlers", "streams", "tests") for p in (ROOT / top).rglob("*.py"))
SECTION_REFERENCE = re.compile(r"(docs/\w+\.md|RELIABILITY\.md|README\.md)")
QUOTED = re.compile(r'"([A-Z][^"\n]{2,60})"')


def _headings(path: Path) -> list[str]:
    return [line.lstrip("#").strip() for line in path.read_text("utf-8").splitlines() if line.startswith("#")]


def test_sections_named_in_the_code_exist() -> None:
    """`docs/rules.md, "Outflows"` in a docstring or comment names a heading of that file."""
    missing = []
    for source in SOURCES:
        for number, line in enumerate(source.read_text("utf-8").splitlines(), start=1):
            documents = SECTION_REFERENCE.findall(line)
            if len(documents) != 1:
                continue
            headings = _headings(ROOT / documents[0])
            for section in QUOTED.findall(line.split(documents[0], 1)[1]):
                if not any(h.startswith(section) for h in headings):
                    missing.append(f"{_name(source)}:{number}: {documents[0]} has no section {section!r}")
    assert not missing, missing
