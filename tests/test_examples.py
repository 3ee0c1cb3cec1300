"""Every example runs at its smoke size, and documents the figure of its full run."""

import importlib.util
import pathlib
import re

import pytest

EXAMPLES = sorted((pathlib.Path(__file__).parents[1] / "examples").glob("*.py"))


def test_every_api_has_an_example():
    names = {p.stem for p in EXAMPLES}
    assert {
        "native_episodes",
        "transitions_per_nstep",
        "sequences",
        "pymarl_dropin",
        "ding_dropin",
        "checkpoints",
        "expert_mixing",
    } <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_smoke_run(path, capsys):
    source = path.read_text()
    for module in re.findall(r"^import (gymnasium)$", source, flags=re.M):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{path.name} needs {module}: pip install -e '.[demo]'")
    assert "Full run (" in source, f"{path.name} must record its full run's figure in its docstring"
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--smoke"])
    assert capsys.readouterr().out.strip()
