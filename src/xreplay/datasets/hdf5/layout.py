"""The HDF5 file layout of :func:`~xreplay.datasets.to_hdf5`: a dataset per field, attributes for scheme and counters.

The file is plain HDF5, readable with h5py alone::

    /                      attrs: format="xreplay.hdf5", format_version, kind, capacity, size, writes, ...
    /fields/<name>         one dataset per field, rows in age order (row 0 is the oldest item)
    /lengths               episode buffers only: steps of each episode

A transition buffer's fields are ``[size, *item]`` in the stored dtype (nested names such as
``obs/achieved_goal`` become nested groups); the root attribute ``fields`` (JSON) lists each
field's shape and dtype. An episode buffer's per-step fields are ``[size, max_seq_length, *item]``
and per-episode ones ``[size, *item]``, in the compact dtype the buffer stores (each dataset's
``dtype`` attribute names the declared one); derived fields (one-hot) are not written, the root
attribute ``scheme`` (JSON) says how to compute them. Datasets are chunked (about 1 MiB per chunk),
optionally compressed, and carry HDF5's Fletcher-32 checksum unless ``checksum=False``.
"""

__all__ = ["FORMAT", "FORMAT_VERSION"]

FORMAT = "xreplay.hdf5"  # the root attribute ``format`` of every file
FORMAT_VERSION = 1  # the root attribute ``format_version``; a reader refuses newer files
