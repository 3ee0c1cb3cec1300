"""The docs pages' Python snippets run as written (each page in order, sharing one namespace)."""

import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).parents[1] / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "```python" in p.read_text())


def test_the_pages_with_snippets_are_found():
    names = {p.relative_to(DOCS).as_posix() for p in PAGES}
    assert {"index.md", "native/episodes.md", "migration/pymarl.md", "migration/ding.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(DOCS).as_posix() for p in PAGES])
def test_page_snippets_run(page):
    blocks = [b for b in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S) if "--8<--" not in b]
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(page), "exec"), namespace)  # noqa: S102 - our own documentation
