"""The Python snippets of the API pages run as written (each page in order, sharing one namespace)."""

import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).parents[1] / "docs"
PAGES = [
    "index.md",
    "native/episodes.md",
    "native/transitions.md",
    "native/sequences.md",
    "native/mixing.md",
    "migration/pymarl.md",
    "migration/ding.md",
]


@pytest.mark.parametrize("page", PAGES)
def test_page_snippets_run(page):
    text = (DOCS / page).read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "--8<--" not in b]
    assert blocks, f"{page} has no Python snippet"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOCS / page), "exec"), namespace)  # noqa: S102 - our own documentation
