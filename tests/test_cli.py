import pytest

from xreplay.cli import main
from xreplay.demo import run_demo


def test_demo_report_figures_are_measured():
    report = run_demo(episodes=12, buffer_size=64, samples=5, batch_size=8, seed=1)
    assert report.samples == 5 and report.episodes == 12
    assert report.steps >= 12 * 21  # every episode has at least 20 steps plus the bootstrap step
    assert report.insert_eps_per_s > 0 and report.sample_per_s > 0
    assert report.storage_mib == pytest.approx(64 * 61 * 1277 / 2**20, rel=0.01)


def test_demo_compact_uses_less_storage():
    plain = run_demo(episodes=4, buffer_size=32, samples=1, batch_size=4, seed=0)
    compact = run_demo(episodes=4, buffer_size=32, samples=1, batch_size=4, seed=0, compact=True)
    assert compact.storage_mib < 0.8 * plain.storage_mib
    assert compact.loss == plain.loss


def test_cli_demo_prints_throughput(capsys):
    assert main(["demo", "--episodes", "3", "--buffer-size", "16", "--samples", "2", "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "episodes/s" in out and "samples/s" in out and "MiB" in out
