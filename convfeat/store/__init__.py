"""The feature store: one HDF5 file per collection, its only owner.

``layout``    the on-disk layout and its in-memory copy (``write_state``, ``read_state``)
``file``      crash-safe writing: the write lock, the journal and atomic checkpoints (:class:`FeatureFile`),
              and what a writer may write over (:func:`check_target`)
``access``    read-only access shared by the readers (open and check, select blocks and rows)
``read``      reading back: ``load``, ``load_frame``, ``feature_columns``, ``items_table``
              (and ``info``, ``format_info``, ``export`` from ``summary`` and ``export``)
``summary``   ``info`` and ``format_info``
``export``    ``export`` to ``.npy`` / CSV / Parquet
``merge``     combining shard files into one
``importer``  bringing outside embeddings (``.npy``/``.csv``, the study's release) into the layout

Torch-free: nothing here imports torch or :mod:`convfeat.models`.
"""
from .file import FORMAT, FORMAT_VERSION, ITEM_COLUMNS, FeatureFile, StoreError, check_target
from .merge import merge
from .read import EXPORT_FORMATS, export, feature_columns, format_info, info, items_table, load, load_frame

__all__ = ["FORMAT", "FORMAT_VERSION", "ITEM_COLUMNS", "FeatureFile", "StoreError", "check_target", "merge", "EXPORT_FORMATS",
           "export", "feature_columns", "format_info", "info", "items_table", "load", "load_frame"]
