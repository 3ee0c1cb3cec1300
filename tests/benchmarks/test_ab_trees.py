"""The before/after comparison of two git revisions (benchmarks/ab_trees.py) keeps working on both trees."""

import importlib.util
import math
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[2]
BASELINE = "eaae662"  # the tool's default "before": the tree before issue 10's restructuring


def _load_tool():
    spec = importlib.util.spec_from_file_location("ab_trees", ROOT / "benchmarks" / "ab_trees.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["ab_trees"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


ab = _load_tool()


def _has_revision(rev: str) -> bool:
    if shutil.which("git") is None:
        return False
    done = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{rev}^{{commit}}"], capture_output=True)
    return done.returncode == 0


@pytest.mark.skipif(not _has_revision(BASELINE), reason=f"needs a git checkout holding {BASELINE}")
def test_smoke_run_compares_both_trees(capsys):
    # S1 (a list of rows), S4 (whose script's API changed since the baseline) and S5 keep this under ~30 s;
    # S2's and S3's result shapes are read by the metric tests below, the full run reads all five.
    rows = ab.main(["--smoke", "--only", "s1", "s4", "s5"])
    out = capsys.readouterr().out
    assert out.startswith("xreplay A/B of whole trees: before = eaae662 ")
    assert "| bench | operation | unit | before | after | after/before |" in out
    ours = [row for row in rows if not row.control]
    assert {row.bench for row in ours} == {"s1", "s4", "s5"}
    assert {"xreplay native (compact): insert 8", "sample 256 x 80 from 200,000 steps", "save (fsync, atomic)"} <= {
        row.op for row in ours
    }
    assert all(row.before > 0 and row.after > 0 and math.isfinite(row.ratio) for row in rows)
    assert all(f"| {row.op} |" in out for row in rows)


def test_a_result_of_another_shape_names_the_script():
    with pytest.raises(RuntimeError, match="s4_sequences.main of the after tree returned a result of another shape"):
        ab._metrics("s4", "after", {"1000000": {"ms": 0.7}})


def test_unknown_revision_names_it():
    with pytest.raises(ValueError, match="no revision 'no-such-revision-xyz' in "):
        ab.extract(ROOT, "no-such-revision-xyz", ROOT / "unused")


def _run(value, ms, peer=None):
    return [
        ab.Metric("insert", "ep/s", value, True, "limit", peer),
        ab.Metric("save", "ms", ms, False),
        ab.Metric("numpy.save", "ms", ms, False, control=True),
    ]


def test_rows_orient_speed_take_medians_and_flag_only_xreplay_slowdowns():
    before = [_run(100.0, 10.0, 100.0), _run(110.0, 12.0, 100.0), _run(90.0, 11.0, 100.0)]
    after = [_run(80.0, 5.0, 100.0), _run(90.0, 6.0, 100.0), _run(85.0, 5.5, 100.0)]
    insert, save, control = ab.summarise("s1", before, after)
    assert (insert.before, insert.after, insert.ratio) == (100.0, 85.0, 0.85)
    assert insert.paired == (0.8, pytest.approx(85 / 90))  # round by round: 80/100, 90/110, 85/90
    assert (insert.peer_before, insert.peer_after) == (1.0, 0.85)
    assert insert.flagged
    assert save.ratio == pytest.approx(2.0) and not save.flagged  # half the time: twice as fast
    assert control.ratio == pytest.approx(2.0) and control.control and not control.flagged
    table = ab.markdown([insert, save, control])
    row = "| S1 | insert | ep/s | 100 | 85.00 | 0.850x | 0.80-0.94 | limit | 1.00x | 0.85x | 0.850x | **below 0.95x** |"
    assert row in table
    assert table.index("| save |") < table.index("| numpy.save |")  # xreplay rows first, then the controls


def test_rows_keep_operations_measured_on_both_sides_only():
    before = [[ab.Metric("old only", "ms", 1.0, False), ab.Metric("both", "ms", 2.0, False)]]
    after = [[ab.Metric("both", "ms", 1.0, False), ab.Metric("new only", "ms", 1.0, False)]]
    assert [row.op for row in ab.summarise("s5", before, after)] == ["both"]
    assert ab.one_sided("s5", before, after) == ["S5 old only (before only)", "S5 new only (after only)"]


def test_script_results_become_metrics_with_their_peers():
    s2 = {
        "xreplay": {"add1 uniform (tr/s)": 3.0, "RSS growth uniform (x payload)": 1.2},
        "cpprb": {"add1 uniform (tr/s)": 1.0},
    }
    ours, peer = ab.s2_metrics(s2)
    assert (ours.op, ours.unit, ours.peer, ours.peer_value, ours.control) == (
        "xreplay: add1 uniform",
        "tr/s",
        "cpprb",
        1.0,
        False,
    )
    assert peer.control and peer.op == "cpprb: add1 uniform"
    s3 = {"buffer memory per stored item (bytes)": {"xreplay": 184.0, "ding": 373.0}}
    memory, ding = ab.s3_metrics(s3)
    assert (memory.unit, memory.higher_is_better, memory.peer_value) == ("bytes", False, 373.0) and ding.control
    assert ab.s4_metrics({"1000000": 0.7})[0].op == "sample 256 x 80 from 1,000,000 steps"
    s5 = ab.s5_metrics({"xreplay_fsync": 0.2, "numpy_fsync": 0.1, "incremental": 0.01})
    assert [(m.op, m.value, m.peer_value) for m in s5 if not m.control] == [
        ("save (fsync, atomic)", 200.0, 100.0),
        ("incremental save, 1% new", 10.0, None),
    ]
