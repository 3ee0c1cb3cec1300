"""Each of the README's Python examples runs on its own, as a reader would copy it."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_its_examples():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_example_runs_alone(block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # files an example writes stay out of the checkout
    namespace: dict = {"__name__": "__readme__"}  # a fresh namespace: nothing from earlier blocks
    exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - our own documentation
