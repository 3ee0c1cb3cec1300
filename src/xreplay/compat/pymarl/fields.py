"""Field set-up for PyMARL schemes, and the read-only field view of compact storage."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch

from xreplay.scheme import Scheme
from xreplay.storage.tensor import TensorStorage

__all__ = ["StoredFields", "expand_scheme", "field_dicts", "torch_dtype"]


def torch_dtype(dtype: Any) -> torch.dtype:
    """Return the torch dtype for a scheme ``dtype`` (``torch.long``, ``float``, ``int``...)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    return torch.empty(0, dtype=dtype).dtype


def expand_scheme(scheme: dict[str, Any], groups: Any, preprocess: dict[str, Any]) -> None:
    """Add preprocess outputs and ``filled`` to ``scheme`` in place, with PyMARL's checks and order."""
    for k, (new_k, transforms) in preprocess.items():
        assert k in scheme, f"preprocess source {k!r} is not in the scheme"
        vshape, dtype = scheme[k]["vshape"], scheme[k]["dtype"]
        for transform in transforms:
            vshape, dtype = transform.infer_output_info(vshape, dtype)
        scheme[new_k] = {"vshape": vshape, "dtype": dtype}
        if "group" in scheme[k]:
            scheme[new_k]["group"] = scheme[k]["group"]
        if "episode_const" in scheme[k]:
            scheme[new_k]["episode_const"] = scheme[k]["episode_const"]
    assert "filled" not in scheme, '"filled" is a reserved key for masking.'
    scheme["filled"] = {"vshape": (1,), "dtype": torch.long}
    for key, info in scheme.items():
        assert "vshape" in info, f"Scheme must define vshape for {key}"
        group = info.get("group", False)
        if group:
            assert group in groups, f"Group {group} must have its number of members defined in _groups_"


def core_scheme(scheme: dict[str, Any], groups: Any, preprocess: dict[str, Any], compact: bool) -> Scheme:
    """Return the core :class:`Scheme` of an expanded PyMARL scheme."""
    normalised = {k: {**info, "dtype": torch_dtype(info.get("dtype", torch.float32))} for k, info in scheme.items()}
    return Scheme.from_pymarl(normalised, dict(groups or {}), preprocess, compact=compact)


def field_dicts(storage: TensorStorage, compact: bool) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """Return the (transition, episode) field mappings of a storage, in scheme order."""
    per_step, per_episode = storage.scheme.names_by_timing()
    if compact:
        return StoredFields(storage, list(per_step)), StoredFields(storage, list(per_episode))
    columns = storage.columns
    return {k: columns[k] for k in per_step}, {k: columns[k] for k in per_episode}


class StoredFields(Mapping[str, torch.Tensor]):
    """Read-only mapping of a compact storage's fields, decoded to their declared dtypes on access.

    Each access returns a new tensor: write through ``EpisodeBatch.update``.
    """

    def __init__(self, storage: TensorStorage, names: list[str]):
        """View ``names`` of ``storage``."""
        self.storage = storage
        self.names = names

    def __getitem__(self, name: str) -> torch.Tensor:
        """Return field ``name`` of every episode, decoded."""
        if name not in self.names:
            raise KeyError(name)
        return self.storage.decode(self.storage.rows, [name])[name]

    def __iter__(self) -> Iterator[str]:
        """Iterate over field names in scheme order."""
        return iter(self.names)

    def __len__(self) -> int:
        """Return the number of fields."""
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        """Return whether ``name`` is one of these fields (without decoding)."""
        return name in self.names
