"""The HDF5 file layout of :func:`~xreplay.datasets.to_hdf5`: a dataset per field, attributes for scheme and counters.

The file is plain HDF5, readable with h5py alone::

    /                      attrs: format="xreplay.hdf5", format_version, kind, capacity, size, writes,
                                  checksum ("crc32", "fletcher32" or "none"), ...
    /fields/<name>         one dataset per field, rows in age order (row 0 is the oldest item); attr crc32
    /lengths               episode buffers only: steps of each episode; attr crc32

A transition buffer's fields are ``[size, *item]`` in the stored dtype (nested names such as
``obs/achieved_goal`` become nested groups); the root attribute ``fields`` (JSON) lists each
field's shape and dtype. An episode buffer's per-step fields are ``[size, max_seq_length, *item]``
and per-episode ones ``[size, *item]``, in the compact dtype the buffer stores (each dataset's
``dtype`` attribute names the declared one); derived fields (one-hot) are not written, the root
attribute ``scheme`` (JSON) says how to compute them. Datasets are chunked (about 1 MiB per chunk)
and optionally compressed.

Integrity (the root attribute ``checksum``): with ``"crc32"`` (the default) every dataset has an
attribute ``crc32``, the CRC-32 (``zlib.crc32``) of its values' bytes in row-major order as the
file stores them (its dtype and byte order), which a reader recomputes; with ``"fletcher32"``
every chunk carries HDF5's Fletcher-32 checksum, which HDF5 checks on each read. Files written
before the attribute existed have Fletcher-32 chunks.
"""

__all__ = ["CHECKSUMS", "CRC_ATTRIBUTE", "FORMAT", "FORMAT_VERSION"]

FORMAT = "xreplay.hdf5"  # the root attribute ``format`` of every file
FORMAT_VERSION = 1  # the root attribute ``format_version``; a reader refuses newer files
CHECKSUMS = ("crc32", "fletcher32", None)  # the ``checksum`` values of to_hdf5 (None: no check)
CRC_ATTRIBUTE = "crc32"  # the dataset attribute holding its CRC-32 (a uint32) under checksum="crc32"
