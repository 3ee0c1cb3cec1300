"""Hypothesis strategies shared by the test modules."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

# Integer-valued priorities: their sums are exact in float64, so totals compare with ==.
integer_priorities = st.integers(min_value=0, max_value=1000).map(float)


@st.composite
def update_sequences(draw, max_size: int = 70, max_updates: int = 8):
    """Draw (size, [(indices, values), ...]) for a tree of ``size`` leaves."""
    size = draw(st.integers(min_value=1, max_value=max_size))
    updates = []
    for _ in range(draw(st.integers(min_value=1, max_value=max_updates))):
        n = draw(st.integers(min_value=1, max_value=2 * size))
        indices = draw(st.lists(st.integers(0, size - 1), min_size=n, max_size=n))
        values = draw(st.lists(integer_priorities, min_size=n, max_size=n))
        updates.append((np.array(indices, dtype=np.int64), np.array(values)))
    return size, updates


def apply_reference(size: int, updates) -> np.ndarray:
    """Return the leaves after ``updates`` applied one item at a time (last value wins)."""
    leaves = np.zeros(size)
    for indices, values in updates:
        for i, v in zip(indices.tolist(), values.tolist(), strict=True):
            leaves[i] = v
    return leaves


def chi_square_critical(df: int, z: float = 3.09) -> float:
    """Return the chi-square critical value for ``df`` at normal quantile ``z`` (Wilson-Hilferty)."""
    return df * (1 - 2 / (9 * df) + z * np.sqrt(2 / (9 * df))) ** 3
