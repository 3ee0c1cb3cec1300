import json

import pytest

from xreplay.demos.common import DemoError, ReplayClock, RunFolder, peak_rss_mib, require_extra


def test_require_extra_names_the_install_command():
    with pytest.raises(DemoError, match=r"missing \(no_such_pkg_xyz not installed\): pip install 'xreplay\[demo\]'"):
        require_extra(["json", "no_such_pkg_xyz"])


def test_start_refuses_a_folder_holding_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DemoError, match="not empty and holds no demo run"):
        RunFolder(tmp_path, "dqn").start({})
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_start_over_replaces_only_an_earlier_runs_checkpoints(tmp_path):
    folder = RunFolder(tmp_path, "dqn")
    folder.start({"seed": 0})
    folder.checkpoint(10, lambda path: (path / "state.json").write_text("{}"))
    (tmp_path / "curve.png").write_bytes(b"png")
    folder.start({"seed": 1})
    assert not list(tmp_path.glob("step-*")) and (tmp_path / "curve.png").exists()
    with pytest.raises(DemoError, match="holds no complete checkpoint yet"):
        folder.latest()


def test_checkpoint_keeps_the_latest_only_and_names_it(tmp_path):
    folder = RunFolder(tmp_path, "dqn")
    folder.start({"seed": 3})
    for step in (5, 9):
        folder.checkpoint(step, lambda path: (path / "state.json").write_text("{}"))
    config, latest = folder.latest()
    assert config == {"seed": 3} and latest == tmp_path / "step-00000009"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.json", "step-00000009"]


def test_a_failed_checkpoint_leaves_the_previous_one_in_force(tmp_path):
    folder = RunFolder(tmp_path, "dqn")
    folder.start({})
    folder.checkpoint(5, lambda path: (path / "state.json").write_text("{}"))

    def interrupted(path):
        (path / "state.json").write_text("{")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        folder.checkpoint(9, interrupted)
    assert folder.latest()[1].name == "step-00000005"


@pytest.mark.parametrize(
    ("index", "message"),
    [
        pytest.param("{not json", "is unreadable", id="not_json"),
        pytest.param(json.dumps({"format": "other"}), "is not a demo checkpoint (format 'other')", id="format"),
        pytest.param(json.dumps({"format": "xreplay-demo", "version": 99}), "demo format version 99", id="version"),
        pytest.param(
            json.dumps({"format": "xreplay-demo", "version": 1, "demo": "dqn", "latest": "../../etc"}),
            "holds no complete checkpoint",
            id="path_outside_the_folder",
        ),
    ],
)
def test_untrusted_demo_json_is_refused_in_one_line(tmp_path, index, message):
    (tmp_path / "demo.json").write_text(index)
    with pytest.raises(DemoError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RunFolder(tmp_path, "dqn").latest()


def test_replay_clock_share_and_memory_reading():
    clock = ReplayClock()
    clock.start_loop()
    with clock.replay("write"):
        sum(range(10_000))
    clock.pause_loop()
    assert 0.0 < clock.share() <= 1.0 and clock.calls == {"write": 1}
    assert peak_rss_mib() is None or peak_rss_mib() > 10
