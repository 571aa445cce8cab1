"""Extraction: a collection of audio → one HDF5 feature file.

``items``     inputs (folders, files, lists, manifests) → items with stable ids; shards;
              :func:`read_manifest`, the one reader of item manifests
``sets``      feature sets: model + options → name, config and provenance
``worker``    one item → its checked 12-kHz signal (:func:`convfeat.audio.read_signal`; the
              windows are a view of it, :func:`windows_of`) (+ MFCC) in a torch-free decode process
``handoff``   decoded signals back from the decode processes through shared memory (Linux)
``pipeline``  bounded decoding ahead, batching, inference, finiteness checks, journaling and
              checkpoints: :func:`extract`
``cluster``   the same on a Dask cluster, one task per shard, parts merged: :func:`extract_on_cluster`

The names below are imported when first used, so that a decode process, which imports
:mod:`.worker` only, starts without the store (h5py) and the pipeline.
"""
import importlib

_EXPORTS = {
    "Policy": "..audio", "ExtractError": ".items", "collect_items": ".items", "parse_shard": ".items",
    "read_manifest": ".items", "shard_of": ".items", "extract_on_cluster": ".cluster", "Summary": ".pipeline",
    "extract": ".pipeline", "FEATURE_MODELS": ".sets", "SetSpec": ".sets", "parse_set": ".sets",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
