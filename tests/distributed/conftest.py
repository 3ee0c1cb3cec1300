"""A local Ray for the distributed tests, started once per session (skipped where Ray is not installed)."""

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    """Start a 2-CPU local Ray without a dashboard (or reuse one already started); shut it down at the end."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'xreplay[ray]'")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()
