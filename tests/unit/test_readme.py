"""The README and docs/ hold together: every relative link names a file of the repository and,
with ``#anchor``, a heading in it (GitHub's anchors); the README has its contents list and the
sections a newcomer needs, and points at the reference moved to docs/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a page's headings (lower case, punctuation dropped, spaces to -)."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.S)
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", "")).replace(" ", "-")
        found.add(slug)
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for link in LINK.findall(text):
        if re.match(r"^[a-z]+:", link):
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target.read_text()):
            broken.append(f"{link}: no heading #{anchor} in {target.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}:\n" + "\n".join(broken)


def test_readme_has_contents_and_a_newcomers_sections():
    readme = (ROOT / "README.md").read_text()
    for section in ("Contents", "Quick start", "Troubleshooting", "Reference", "Your own model"):
        assert re.search(rf"^## {section}\b", readme, re.M), f"README lacks ## {section}"
    contents = readme.split("## Contents", 1)[1].split("\n## ", 1)[0]
    for heading in re.findall(r"^## (.+)$", readme, re.M):
        if heading != "Contents":
            slug = next(iter(anchors(f"## {heading}")))
            assert f"(#{slug})" in contents, f"the contents list omits ## {heading}"
    for page in ("docs/reference.md", "docs/server.md", "docs/tests.md"):
        assert f"({page}" in readme, f"the README does not link {page}"
    assert "workbench/assess/assessment.schema.json" in readme
