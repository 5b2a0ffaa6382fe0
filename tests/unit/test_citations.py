"""Every 'why' a comment cites is inside the clone (docs/design.md is the design record): a cited document exists,
a cited section of the design record is one of its headings, and nothing cites the design contract that lives
only beside the repository."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = [
    path
    for pattern in ("*.py", "*.toml", "*.yaml", "*.sh", "Dockerfile", "dev")
    for path in REPO.rglob(pattern)
    if not {".venv", ".git", "node_modules"} & set(path.relative_to(REPO).parts)
    and not path.name.endswith(("_pb2.py", "_pb2_grpc.py"))
]
CITED_DOC = re.compile(r"\bdocs/([\w./-]+\.md)")
CITED_SECTION = re.compile(r'docs/design\.md,? "([^"]+)"')


def _headings() -> set[str]:
    text = (REPO / "docs" / "design.md").read_text()
    # "## Sessions" and "## URL trimming (stream_jobs)" are cited as "Sessions" and "URL trimming".
    return {re.sub(r"\s*\(.*\)$", "", line.lstrip("#").strip()) for line in text.splitlines() if line.startswith("#")}


def test_the_sources_are_found():
    assert len(SOURCES) > 100


def test_every_cited_document_is_in_the_repository():
    missing = {
        f"{path.relative_to(REPO)}: docs/{doc}"
        for path in SOURCES
        for doc in CITED_DOC.findall(path.read_text(errors="replace"))
        if not (REPO / "docs" / doc).is_file()
    }
    assert not missing, sorted(missing)


def test_every_cited_section_of_the_design_record_is_one_of_its_headings():
    headings = _headings()
    wrong = {
        f"{path.relative_to(REPO)}: {section!r}"
        for path in SOURCES
        for section in CITED_SECTION.findall(re.sub(r"\s*\n\s*(#\s*)?", " ", path.read_text(errors="replace")))
        if section not in headings
    }
    assert not wrong, sorted(wrong)


def test_nothing_cites_the_design_contract_outside_the_repository():
    outside = [str(p.relative_to(REPO)) for p in SOURCES if re.search(r"(?<!docs/)\bDESIGN\.md", p.read_text())]
    assert not outside, outside


def test_every_link_between_the_documents_resolves():
    broken = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://", "#", "mailto:")):
                continue
            if not (doc.parent / target.split("#", 1)[0]).exists():
                broken.append(f"{doc.relative_to(REPO)}: {target}")
    assert not broken, broken
