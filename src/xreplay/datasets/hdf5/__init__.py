"""HDF5 files of a buffer's items, readable with h5py alone (the layout: :mod:`xreplay.datasets.hdf5.layout`).

:func:`to_hdf5` (:mod:`~xreplay.datasets.hdf5.export`) writes a transition or episode buffer's
items in age order; :func:`from_hdf5` (:mod:`~xreplay.datasets.hdf5.load`) checks a file against
its attributes and reads it into a new buffer or an existing one.
"""

from xreplay.datasets.hdf5.export import to_hdf5
from xreplay.datasets.hdf5.layout import FORMAT, FORMAT_VERSION
from xreplay.datasets.hdf5.load import from_hdf5

__all__ = ["FORMAT", "FORMAT_VERSION", "from_hdf5", "to_hdf5"]
