"""Resource checks before allocating: counts, devices, and the memory a process may still use."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from xreplay.errors import ArgumentError, CapacityError, DeviceError
from xreplay.storage import resources
from xreplay.storage.resources import MemoryLimit, as_count, as_device, check_allocation, memory_limit


@pytest.mark.parametrize("value", [3, np.int64(3), np.uint8(3)])
def test_counts_accept_python_and_numpy_integers(value):
    assert as_count(value, "capacity", minimum=1) == 3 and type(as_count(value, "capacity")) is int


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(0, "received 0", id="below_minimum"),
        pytest.param(2.5, r"received 2.5 \(float\)", id="float"),
        pytest.param(True, r"received True \(bool\)", id="bool"),
        pytest.param(np.float64(3.0), "received", id="numpy_float"),
        pytest.param("3", "received '3'", id="text"),
    ],
)
def test_counts_refuse_anything_else(value, message):
    with pytest.raises(ArgumentError, match=f"capacity must be an int >= 1, {message}"):
        as_count(value, "capacity", minimum=1)


@pytest.mark.parametrize("device", ["gpu", "meta", "nonsense:0", 3.5])
def test_devices_that_cannot_hold_data_are_refused(device):
    with pytest.raises(DeviceError, match="device"):
        as_device(device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_a_gpu_says_so():
    with pytest.raises(DeviceError, match="torch sees no CUDA device"):
        as_device("cuda")


def test_the_limit_is_the_smallest_of_available_memory_rlimit_and_cgroups(tmp_path, monkeypatch):
    (tmp_path / "proc_cgroup").write_text("0::/job/step\n")
    step = tmp_path / "fs" / "job" / "step"
    step.mkdir(parents=True)
    (step / "memory.max").write_text("max\n")  # no limit on the step itself
    (step.parent / "memory.max").write_text(f"{3 * 2**30}\n")  # the job's limit applies to it
    (step.parent / "memory.current").write_text(f"{2**30}\n")
    monkeypatch.setattr(resources, "_PROC_CGROUP", tmp_path / "proc_cgroup")
    monkeypatch.setattr(resources, "_CGROUP_ROOT", tmp_path / "fs")
    monkeypatch.setattr(resources, "_available_memory", lambda: 8 * 2**30)
    monkeypatch.setattr(resources, "_address_space_left", lambda: 5 * 2**30)
    limit = memory_limit("cpu")
    assert limit.nbytes == 2 * 2**30
    assert limit.bounds == {
        "available memory": 8 * 2**30,
        "RLIMIT_AS": 5 * 2**30,
        f"cgroup {step.parent / 'memory.max'}": 2 * 2**30,
    }
    with pytest.raises(CapacityError, match=r"needs 3,072.0 MiB on cpu, but this process may allocate at most "
                                            r"2,048.0 MiB there \(cgroup .*memory.max 2,048.0 MiB, RLIMIT_AS"):
        check_allocation(3 * 2**30, "cpu", "storage", "lower the capacity")


def test_cgroup_v1_limits_count_too(tmp_path, monkeypatch):
    (tmp_path / "proc_cgroup").write_text("4:memory:/box\n3:cpu:/box\n")
    box = tmp_path / "fs" / "memory" / "box"
    box.mkdir(parents=True)
    (box / "memory.limit_in_bytes").write_text(f"{2**30}\n")
    (box / "memory.usage_in_bytes").write_text(f"{2**28}\n")
    (box.parent / "memory.limit_in_bytes").write_text(f"{2**63 - 4096}\n")  # v1's "no limit"
    monkeypatch.setattr(resources, "_PROC_CGROUP", tmp_path / "proc_cgroup")
    monkeypatch.setattr(resources, "_CGROUP_ROOT", tmp_path / "fs")
    assert dict(resources._cgroup_room()) == {f"cgroup {box / 'memory.limit_in_bytes'}": 2**30 - 2**28}


def test_small_allocations_skip_the_look_up(monkeypatch):
    monkeypatch.setattr(resources, "memory_limit", lambda device: MemoryLimit(0, {"RLIMIT_AS": 0}))
    check_allocation(2**20, "cpu", "a small batch", "")  # under 64 MiB: not looked up
    with pytest.raises(CapacityError):
        check_allocation(2**27, "cpu", "a large batch", "")


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS and /proc/self/statm are Linux's")
def test_a_buffer_over_the_process_address_space_limit_is_refused_in_a_real_process():
    child = textwrap.dedent(
        """
        import resource
        from xreplay import EpisodeBuffer, Field, Scheme
        from xreplay.errors import CapacityError
        from xreplay.storage.resources import _virtual_size

        resource.setrlimit(resource.RLIMIT_AS, (_virtual_size() + 2**29, resource.RLIM_INFINITY))  # 512 MiB more
        try:
            EpisodeBuffer(Scheme({"obs": Field((1024,))}), capacity=400, max_seq_length=1000)  # 1.5 GiB
        except CapacityError as exc:
            print("refused:", exc)
        """
    )
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "refused: storage for 400 episodes x 4096000 bytes needs 1,562.5 MiB" in result.stdout
    assert "RLIMIT_AS" in result.stdout
