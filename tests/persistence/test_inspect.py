"""``xreplay inspect``: a checkpoint's summary, and the plot's optional dependency."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import xreplay
from tests.persistence.persistence_helpers import filled_buffer, read_meta, reseal
from xreplay.cli import main
from xreplay.storage.npy import npy_header


@pytest.fixture
def ckpt(tmp_path):
    xreplay.save(filled_buffer(capacity=16, n=10), tmp_path / "ckpt")
    return tmp_path / "ckpt"


def test_inspect_prints_kind_fields_fill_and_counters(ckpt, capsys):
    assert main(["inspect", str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert "episode_buffer (format version 3" in out
    assert "fill        10 / 16 (62.5%)" in out
    assert "writes 10, cursor 10" in out
    assert "obs" in out and "(5, 2, 3)" in out and "float32" in out
    assert "derived from 'actions'" in out
    assert "rows.g000001.npy" in out and "lengths.g000001.npy" in out
    assert f"numpy.load('{ckpt}/<file>', mmap_mode='r')" in out and "one field per scheme field" in out
    assert "delta files" not in out.split("numpy")[-1]  # a first save holds base files only


def test_inspect_of_step_major_rows_says_how_numpy_reads_them(tmp_path, capsys):
    xreplay.save(filled_buffer(capacity=16, n=10, row_order="step"), tmp_path / "ckpt")
    assert main(["inspect", str(tmp_path / "ckpt")]) == 0
    out = capsys.readouterr().out
    assert 'step-major: ["steps"][field] per step (e.g. ["steps"]["obs"]), ["episode"][field] per episode' in out
    assert "obs" in out and "(5, 2, 3)" in out


def test_inspect_says_what_numpy_does_not_see(ckpt, capsys):
    from tests.persistence.persistence_helpers import episodes
    from xreplay import EpisodeBuffer

    buffer = xreplay.load(ckpt, kind=EpisodeBuffer)
    buffer.add(episodes(1, 3))
    assert xreplay.save(buffer, ckpt).incremental
    assert main(["inspect", str(ckpt)]) == 0
    assert "numpy sees rows, lengths as of their base files" in capsys.readouterr().out
    xreplay.save(buffer, ckpt, incremental=False)
    assert main(["inspect", str(ckpt)]) == 0
    assert "numpy sees" not in capsys.readouterr().out


def test_inspect_reports_priority_stats(ckpt, capsys):
    import zlib

    meta = read_meta(ckpt)
    priorities = np.linspace(0.5, 2.0, 16).astype(np.float32)
    header = npy_header(priorities.dtype, priorities.shape)  # the header xreplay writes (data at byte 4096)
    (ckpt / "sampler_priorities.g000001.npy").write_bytes(header + priorities.tobytes())
    meta["arrays"]["sampler.priorities"] = {
        "dtype": "<f4",
        "shape": [16],
        "file": "sampler_priorities.g000001.npy",
        "nbytes": 64,
        "crc32": zlib.crc32(priorities.tobytes()),
        "deltas": [],
    }
    reseal(ckpt, meta)
    assert main(["inspect", str(ckpt)]) == 0
    assert f"max {priorities[9]:.4g}" in capsys.readouterr().out  # over the 10 stored slots only


def test_inspect_of_a_non_checkpoint_fails_with_the_reason(tmp_path, capsys):
    assert main(["inspect", str(tmp_path)]) == 1
    assert "no metadata.json" in capsys.readouterr().err


def test_plot_without_matplotlib_names_the_extra(ckpt, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    with pytest.raises(SystemExit, match=r"pip install 'xreplay\[plot\]'"):
        main(["inspect", str(ckpt), "--plot", str(tmp_path / "p.png")])


def test_plot_writes_a_png(ckpt, tmp_path):
    pytest.importorskip("matplotlib")
    assert main(["inspect", str(ckpt), "--plot", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_without_matplotlib_says_so_before_printing_anything(ckpt, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SystemExit, match=r"pip install 'xreplay\[plot\]'"):
        main(["inspect", str(ckpt), "--plot", str(tmp_path / "p.png")])
    assert capsys.readouterr().out == ""  # not the whole summary first


def test_transition_checkpoints_show_field_names(tmp_path, capsys):
    from tests.persistence import kinds

    xreplay.save(kinds.filled("transition"), tmp_path / "t")
    assert main(["inspect", str(tmp_path / "t")]) == 0
    out = capsys.readouterr().out
    assert "  obs                  (2,)" in out and "  act                  ()" in out and "next_obs" in out
    assert "column0 (obs)" in out and "column1 (act)" in out


def test_ding_checkpoints_show_their_true_fill(tmp_path, capsys):
    from xreplay.compat.ding import DequeBuffer

    buffer = DequeBuffer(size=100)
    for i in range(30):
        buffer.push({"x": i})
    buffer.save_data(str(tmp_path / "d"))
    assert main(["inspect", str(tmp_path / "d")]) == 0
    assert "fill        30 / 100 (30.0%)" in capsys.readouterr().out


def _blue_pixels(png, half):
    import matplotlib.image

    image = matplotlib.image.imread(png)[..., :3]
    side = image[:, : image.shape[1] // 2] if half == "left" else image[:, image.shape[1] // 2 :]
    blue = (side[..., 0] < 0.3) & (side[..., 1] > 0.3) & (side[..., 1] < 0.6) & (side[..., 2] > 0.6)
    return int(blue.sum())


@pytest.mark.parametrize("kind", ["episode", "transition", "ding"])
def test_plot_panels_are_not_empty(tmp_path, kind):
    pytest.importorskip("matplotlib")
    from tests.persistence import kinds

    kinds.save(kind, kinds.filled(kind), tmp_path / "c")
    assert main(["inspect", str(tmp_path / "c"), "--plot", str(tmp_path / "p.png")]) == 0
    assert _blue_pixels(tmp_path / "p.png", "left") > 500  # fill bars or the histogram of lengths
    if kind == "transition":
        assert _blue_pixels(tmp_path / "p.png", "right") > 500  # the priority histogram
