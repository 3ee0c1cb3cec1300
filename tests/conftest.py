"""Shared fixtures: a fixed hypothesis profile so CI time stays bounded."""

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")
