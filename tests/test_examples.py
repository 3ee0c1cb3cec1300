"""Each per-API example runs at its smoke size, and documents the figure of its full run."""

import importlib.util
import pathlib

import pytest

FOLDER = pathlib.Path(__file__).parents[1] / "examples"
# One script per API (issue 13) -> the optional packages it imports.
EXAMPLES = {
    "native_episodes": [],
    "transitions_per_nstep": ["gymnasium"],
    "sequences": [],
    "pymarl_dropin": [],
    "ding_dropin": ["gymnasium"],
    "checkpoints": [],
    "expert_mixing": ["gymnasium"],
}


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_example_smoke_run(name, capsys):
    path = FOLDER / f"{name}.py"
    missing = [m for m in EXAMPLES[name] if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{path.name} needs {', '.join(missing)}: pip install -e '.[demo]'")
    assert "Full run (" in path.read_text(), f"{path.name} must record its full run's figure in its docstring"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--smoke"])
    assert capsys.readouterr().out.strip()
