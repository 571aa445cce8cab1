"""The feature store: one HDF5 file per collection, its only owner.

``file``      the layout, the write lock, the journal and atomic checkpoints (:class:`FeatureFile`)
``read``      reading back: ``load``, ``load_frame``, ``info``, ``export``, ``items_table``
``merge``     combining shard files into one
``importer``  bringing outside embeddings (``.npy``/``.csv``, the study's release) into the layout

Torch-free: nothing here imports torch or :mod:`convfeat.models`.
"""
from .file import FORMAT, FORMAT_VERSION, ITEM_COLUMNS, FeatureFile, StoreError
from .merge import merge
from .read import EXPORT_FORMATS, export, feature_columns, format_info, info, items_table, load, load_frame

__all__ = ["FORMAT", "FORMAT_VERSION", "ITEM_COLUMNS", "FeatureFile", "StoreError", "merge", "EXPORT_FORMATS",
           "export", "feature_columns", "format_info", "info", "items_table", "load", "load_frame"]
