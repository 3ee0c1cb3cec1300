import json

import pytest

from tests.demos.conftest import needs_demo_extra
from xreplay.cli import main


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["demo", "chess"], "unknown demo 'chess'; choose one of dqn, qmix, r2d2", id="unknown_name"),
        pytest.param(["demo", "r2d2", "--resume", "x"], "the r2d2 demo does not checkpoint", id="resume_other_demo"),
    ],
)
def test_demo_bad_input_is_one_line(argv, expected, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1


def test_demo_resume_of_a_plain_folder_is_one_line(tmp_path, capsys):
    assert main(["demo", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path} is not a demo checkpoint (no demo.json)" in err and err.count("\n") == 1


def test_demo_resume_of_another_demos_folder_names_it(tmp_path, capsys):
    (tmp_path / "demo.json").write_text(
        json.dumps({"format": "xreplay-demo", "version": 1, "demo": "qmix", "config": {}, "latest": None})
    )
    assert main(["demo", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "holds a checkpoint of the 'qmix' demo, not 'dqn'" in err
    assert f"resume it with `xreplay demo qmix --resume {tmp_path}`" in err


def test_demo_without_the_extra_says_what_to_install(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gymnasium" else real(name, *a))
    assert main(["demo", "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert "the demo extra is missing (gymnasium" in err and "not installed): pip install 'xreplay[demo]'" in err
    assert err.count("\n") == 1


@needs_demo_extra
def test_cli_demo_prints_return_share_curve_and_resume_hint(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["demo", "--steps", "1200", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "final       mean return" in text and "% of the training loop" in text
    assert f"curve       {out / 'curve.png'}" in text and f"xreplay demo --resume {out}" in text
    assert main(["demo", "--resume", str(out), "--no-progress", "--steps", "9"]) == 0
    text = capsys.readouterr().out
    assert "resuming the DQN run" in text and "ignoring --steps: a resumed run keeps the settings" in text


@needs_demo_extra
def test_cli_demo_ctrl_c_keeps_the_checkpoint_and_says_how_to_resume(tmp_path, capsys, monkeypatch):
    from xreplay.demos.dqn_agent import DQNLearner

    out = tmp_path / "run"
    original = DQNLearner.learn
    calls = {"n": 0}

    def learn_then_interrupt(self, clock):
        calls["n"] += 1
        if calls["n"] == 700:
            raise KeyboardInterrupt
        original(self, clock)

    monkeypatch.setattr(DQNLearner, "learn", learn_then_interrupt)
    code = main(["demo", "--steps", "5000", "--checkpoint-every", "300", "--out", str(out), "--no-progress"])
    assert code == 130
    err = capsys.readouterr().err
    assert "interrupted; the last checkpoint" in err and f"continue with `xreplay demo --resume {out}`" in err
    assert json.loads((out / "demo.json").read_text())["latest"].startswith("step-")
