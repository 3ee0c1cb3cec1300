import importlib.util
import pathlib

import pytest

from xreplay.bench import SCRIPTS, SIZES, find_benchmarks, ratios
from xreplay.cli import main

ROOT = pathlib.Path(__file__).parents[1]


def test_every_workload_has_every_size():
    assert set(SIZES) == set(SCRIPTS) == {"s1", "s2", "s3", "s4", "s5"}
    assert all(set(sizes) == {"smoke", "medium", "full"} for sizes in SIZES.values())


def test_benchmarks_are_found_from_the_checkout(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # not from the working directory: from where the package lives
    assert find_benchmarks() == (ROOT / "benchmarks").resolve()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["bench", "--only", "s9"], "unknown workload 's9'; choose among s1, s2, s3, s4, s5", id="unknown"),
        pytest.param(["bench", "--benchmarks", "/nonexistent"], "no benchmark scripts in /nonexistent", id="no_dir"),
    ],
)
def test_bench_bad_input_is_one_line(argv, expected, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1


def test_ratios_are_oriented_so_that_above_one_means_xreplay_is_better():
    s2 = {
        "xreplay": {"add1 uniform (tr/s)": 300.0, "RSS growth uniform (x payload)": 1.0},
        "cpprb": {"add1 uniform (tr/s)": 100.0, "RSS growth uniform (x payload)": 2.0},
    }
    assert ratios("s2", s2) == [("S2", "add1 uniform (tr/s)", "cpprb", 3.0)]
    s3 = {
        "sample(32) (calls/s)": {"xreplay": 50.0, "ding": 10.0},
        "buffer memory per stored item (bytes)": {"xreplay": 100.0, "ding": 400.0},
        "PER loop (loops/s)": {"xreplay": 5.0, "ding": None},
    }
    assert [r[3] for r in ratios("s3", s3)] == [5.0, 4.0]
    assert ratios("s4", {1_000: 2.0, 10_000: 4.0})[0][3] == 0.5
    assert ratios("s3", None) == []


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="--plot needs matplotlib")
def test_bench_smoke_prints_the_ratio_table_and_plots(tmp_path, capsys):
    png = tmp_path / "bench.png"
    assert main(["bench", "--size", "smoke", "--only", "s5", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "== S5 (s5_checkpoint.py, smoke) ==" in out and "xreplay vs baselines" in out
    assert "S5  save (fsync, atomic)" in out and "vs numpy.save + fsync" in out
    assert png.stat().st_size > 1000


def test_later_scripts_join_through_bench_sizes(tmp_path):
    from xreplay.bench import discover, run_bench

    for name in SCRIPTS.values():
        (tmp_path / name).write_text("")
    (tmp_path / "s9_new.py").write_text(
        'BENCH_SIZES = {"smoke": ["--tiny"], "medium": [], "full": []}\n'
        "def main(argv):\n    print('xreplay s9', argv)\n    return {'x': 1.0}\n"
    )
    (tmp_path / "s7_private.py").write_text("def main(argv):\n    pass\n")  # no BENCH_SIZES: not run
    assert discover(tmp_path)["s9"] == "s9_new.py" and "s7" not in discover(tmp_path)
    assert run_bench(["s9"], "smoke", tmp_path) == []  # its table only; no summary rows
