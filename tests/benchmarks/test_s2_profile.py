"""S2's --profile times every step of xreplay's prioritized loop."""

import importlib.util
import pathlib

PATH = pathlib.Path(__file__).parents[2] / "benchmarks" / "s2_transitions.py"


def test_profile_times_each_step_of_the_prioritized_loop(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(PATH.parent))
    spec = importlib.util.spec_from_file_location("s2_transitions", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    steps = module.main(["--smoke", "--profile"])["xreplay profile (us per call)"]
    assert {"whole loop: sample + update_priorities", "TransitionBuffer.update_priorities"} <= set(steps)
    assert all(us > 0 for us in steps.values())
    assert "S2 profile" in capsys.readouterr().out
