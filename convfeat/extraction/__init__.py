"""Extraction: a collection of audio → one HDF5 feature file.

``items``     inputs (folders, files, lists, manifests) → items with stable ids; shards;
              :func:`read_manifest`, the one reader of item manifests
``sets``      feature sets: model + options → name, config and provenance
``worker``    one item → its checked 12-kHz signal (:func:`convfeat.audio.read_signal`; the
              windows are a view of it, :func:`windows_of`) (+ MFCC) in a torch-free decode process
``pipeline``  bounded decoding ahead, batching, inference, finiteness checks, journaling and
              checkpoints: :func:`extract`
``cluster``   the same on a Dask cluster, one task per shard, parts merged: :func:`extract_on_cluster`
"""
from ..audio import Policy
from .items import ExtractError, collect_items, parse_shard, read_manifest, shard_of
from .cluster import extract_on_cluster
from .pipeline import Summary, extract
from .sets import FEATURE_MODELS, SetSpec, parse_set

__all__ = ["Policy", "ExtractError", "collect_items", "parse_shard", "read_manifest", "shard_of", "Summary", "extract",
           "extract_on_cluster",
           "FEATURE_MODELS", "SetSpec", "parse_set"]
