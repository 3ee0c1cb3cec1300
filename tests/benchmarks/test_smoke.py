"""Every benchmark runs at its smoke size, so the scripts keep working."""

import importlib.util
import pathlib

import pytest

BENCHMARKS = sorted((pathlib.Path(__file__).parents[2] / "benchmarks").glob("s*.py")) + [
    pathlib.Path(__file__).parents[2] / "benchmarks" / "fuzz_malformed.py"
]


@pytest.mark.parametrize("path", BENCHMARKS, ids=[p.stem for p in BENCHMARKS])
def test_benchmark_smoke_run(path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(path.parent))
    monkeypatch.chdir(path.parents[1])
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--smoke"])
    out = capsys.readouterr().out
    assert "xreplay" in out
