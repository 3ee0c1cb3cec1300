"""Offline datasets in and out of buffers: HDF5 files and Minari datasets.

h5py and minari are optional (``pip install 'xreplay[datasets]'``); they are imported when a
function needs them, which fails with that command when they are missing. Datasets sit above
the buffers: they use the buffers' public API, and no buffer imports them.
"""

from xreplay.datasets.hdf5 import from_hdf5, to_hdf5
from xreplay.datasets.minari import MinariFields, from_minari
from xreplay.datasets.minari_export import to_minari

__all__ = ["MinariFields", "from_hdf5", "from_minari", "to_hdf5", "to_minari"]
