"""xreplay.shared exports a curated, documented set of names."""

import xreplay.shared

EXPECTED = {
    "SharedEpisodeBuffer",
    "SharedEpisodeSample",
    "SharedEpisodeWriter",
    "SharedTransitionBuffer",
    "SharedTransitionWriter",
    "list_segments",
    "remove_stale_segments",
    "stale_segments",
}


def test_exports_are_curated_and_documented():
    assert set(xreplay.shared.__all__) == EXPECTED
    for name in xreplay.shared.__all__:
        assert getattr(xreplay.shared, name).__doc__, name
