"""Train a compact tagging convnet on any multi-label tagged manifest.

A manifest is a CSV with a ``path`` column (relative to the CSV's folder, or
absolute), a ``tags`` column (tags joined by ``;``) and optionally ``split``
(``train`` / ``valid`` / ``test``; without it a stable 80/10/10 split is drawn
from a hash of each path).  ``convfeat corpus synth`` writes such a manifest.

The network is the compact convnet of Choi et al. with two changes, both for
training on a CPU: ordinary batch normalisation (batch statistics while
training, moving averages stored for inference, so features are
batch-invariant), and the last two time-poolings shortened (``SHORT_POOLS``)
so that 10-s clips fit; the tag head max-pools whatever time remains, so the
trained model runs on the usual 29-s window as well.  Input preprocessing is
an :class:`~convfeat.preprocess.InputConfig`, stored with the weights.

Everything is seeded: initial weights from ``seed``, the order of epoch ``e``
from ``(seed, e)``, so a run resumed from its checkpoint continues exactly as
an uninterrupted one.  Mel spectrograms are computed once and cached.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio.windows import Policy
from ..fileio import atomic_path
from ..models.input import InputConfig
from ..errors import InputError

SHORT_POOLS = ((2, 4), (3, 4), (2, 5), (2, 2), (4, 1))
SPLITS = ("train", "valid", "test")


class PretrainError(InputError):
    """Bad input to pretraining (manifest, options)."""


# -- data -------------------------------------------------------------------------
@dataclass
class TagData:
    """Items of a tagged manifest: absolute paths, label matrix, split names."""

    ids: list
    paths: list
    tags: tuple          # vocabulary, in first-seen order of the manifest (or given)
    labels: np.ndarray   # (n, n_tags) float32 0/1
    split: np.ndarray    # (n,) str

    def index(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)


def _hash_split(key: str) -> str:
    u = zlib.crc32(key.encode()) % 10
    return "test" if u == 0 else "valid" if u == 1 else "train"


def read_tag_manifest(path: str | Path, vocabulary: list | None = None) -> TagData:
    """Read a multi-label manifest (see the module docstring) with the item manifest
    reader of :func:`convfeat.extraction.items.read_manifest`."""
    from ..extraction.items import read_manifest

    path = Path(path)
    rows = read_manifest(path, error=PretrainError, require=("tags",))
    if not rows:
        raise PretrainError(f"{path}: the manifest has no rows")
    tag_lists = [[t.strip() for t in r["meta"]["tags"].split(";") if t.strip()] for r in rows]
    if vocabulary is None:
        vocab_file = path.parent / "corpus.json"
        vocabulary = []
        if vocab_file.is_file():
            vocabulary = list(json.loads(vocab_file.read_text()).get("tags", []))
        seen = set(vocabulary)
        for tl in tag_lists:
            for t in tl:
                if t not in seen:
                    seen.add(t)
                    vocabulary.append(t)
    col = {t: i for i, t in enumerate(vocabulary)}
    labels = np.zeros((len(rows), len(vocabulary)), dtype=np.float32)
    for i, tl in enumerate(tag_lists):
        for t in tl:
            if t in col:
                labels[i, col[t]] = 1.0
    if "split" in rows[0]["meta"]:
        aliases = {"val": "valid", "validation": "valid", "dev": "valid"}
        split = [r["meta"]["split"].strip().lower() for r in rows]
        split = [aliases.get(s, s) for s in split]
        bad = sorted(set(split) - set(SPLITS))
        if bad:
            raise PretrainError(f"{path}: split values must be train/valid/test, found {bad[:3]}")
    else:
        split = [_hash_split(r["path"]) for r in rows]
    return TagData([r["id"] for r in rows], [r["source"] for r in rows], tuple(vocabulary), labels,
                   np.asarray(split, dtype=object))


def _decode_clip(args) -> np.ndarray:
    """``(path, policy)`` → the clip's first window ``(policy.window_samples,)`` float32 at
    12 kHz (shorter audio repeated): the decode path of extraction and the API."""
    from .. import audio

    path, policy = args
    return audio.read_windows(path, policy)[0][0]


def mel_cache(data: TagData, clip_seconds: float, cache_dir: str | Path, workers: int = 0,
              progress=None) -> np.ndarray:
    """Mel power spectrograms ``(n_items, n_mels, frames)`` float32 of the first
    ``clip_seconds`` of every item (shorter audio repeated), computed once and
    kept in ``cache_dir`` under a key of the files' paths, sizes and mtimes."""
    import torch

    from ..models.frontend import MelFrontend

    policy = Policy(short="repeat", window_seconds=clip_seconds)
    n_samples = policy.window_samples
    h = hashlib.sha1(f"mel/1 {n_samples}".encode())
    for p in data.paths:
        st = os.stat(p)
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"mel-{h.hexdigest()[:16]}.npy"
    if target.is_file():
        return np.load(target, mmap_mode="r")
    front = MelFrontend()
    jobs = [(p, policy) for p in data.paths]
    out = None
    if workers > 0:
        import multiprocessing as mp
        pool = mp.get_context("spawn").Pool(workers)
        stream = pool.imap(_decode_clip, jobs, chunksize=4)
    else:
        pool, stream = None, map(_decode_clip, jobs)
    try:
        batch, start = [], 0
        for i, y in enumerate(stream):
            batch.append(y)
            if len(batch) == 32 or i == len(jobs) - 1:
                with torch.no_grad():
                    mel = front(torch.from_numpy(np.stack(batch)))[:, 0].numpy()
                if out is None:
                    out = np.empty((len(jobs),) + mel.shape[1:], dtype=np.float32)
                out[start:start + len(batch)] = mel
                start += len(batch)
                batch = []
                if progress:
                    progress(start, len(jobs))
    finally:
        if pool is not None:
            pool.close()
    with atomic_path(target, ".npy") as tmp:
        np.save(tmp, out)
    return np.load(target, mmap_mode="r")


# -- model ------------------------------------------------------------------------
def build_model(input_config: InputConfig, tags: tuple, frames: int, seed: int = 0, name: str = ""):
    """A fresh compact convnet (``SHORT_POOLS``, stored-statistics BN) for ``tags``,
    initialised from ``seed``.  Checks that ``frames`` survives every pooling."""
    import torch

    from ..models.compact import CompactConfig, CompactConvnet

    t = frames
    for pool in SHORT_POOLS:
        t //= pool[1]
        if t < 1:
            raise PretrainError(f"clips of {frames} frames are too short for the network's time pooling; "
                                "use --clip-seconds 6 or more")
    torch.manual_seed(seed)
    config = CompactConfig(pools=SHORT_POOLS, n_tags=len(tags), allowed_bn_modes=("stored",),
                           input=input_config.to_dict(), extra={"name": name} if name else {})
    return CompactConvnet(config, bn_mode="stored", tag_names=tuple(tags))


def roc_auc_macro(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean ROC-AUC over the tags that have both positives and negatives."""
    from sklearn.metrics import roc_auc_score

    keep = [j for j in range(labels.shape[1]) if 0 < labels[:, j].sum() < labels.shape[0]]
    if not keep:
        return float("nan")
    return float(np.mean([roc_auc_score(labels[:, j], scores[:, j]) for j in keep]))


def predict(model, mel: np.ndarray, idx: np.ndarray, batch_size: int = 32, device="cpu") -> np.ndarray:
    """Tag probabilities ``(len(idx), n_tags)`` of cached spectrograms, inference mode."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(idx), batch_size):
            x = torch.from_numpy(np.asarray(mel[idx[s:s + batch_size]]))
            x = model.input_transform(x[:, None].to(device))
            out.append(model.forward_input(x)["tags"].cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.head.out_features), np.float32)


# -- training ---------------------------------------------------------------------
def _train_subset(data: TagData, train_size: int | None, seed: int) -> np.ndarray:
    idx = data.index("train")
    if train_size is not None:
        if train_size < 1:
            raise PretrainError("--train-size must be >= 1")
        idx = np.sort(np.random.default_rng([seed, 7]).permutation(idx)[:train_size])
    return idx


def _save_checkpoint(path: Path, payload: dict) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def pretrain(manifest: str | Path, out: str | Path, input_config: InputConfig | None = None, *,
             epochs: int = 10, batch_size: int = 16, lr: float = 1e-3, seed: int = 0,
             train_size: int | None = None, clip_seconds: float = 10.0, device: str = "auto",
             cache_dir: str | Path | None = None, workers: int = 0, name: str = "",
             progress=None, log=None) -> dict:
    """Train a tagging convnet; → the run record (history, best epoch, AUCs).

    manifest: tagged manifest CSV (module docstring).  out: run folder; it
        receives ``checkpoint.pt`` after every epoch (resumable: calling again
        with the same arguments continues, and returns at once when done) and
        the best-validation model as ``model.json`` + ``weights.npz``.
    input_config: preprocessing (default log / per-frequency / standardised / ×1).
    train_size: use only this many training items (seeded subset), for
        learning-curve studies.  clip_seconds: length of the excerpt the network
        sees (first seconds of each item).  device: ``auto`` | ``cpu`` | ``cuda``.
    progress: callback ``(phase, done, total)``; log: callback ``(message)``.
    """
    import torch

    from ..models.trained import save_trained

    cfg = input_config or InputConfig()
    if epochs < 1 or batch_size < 2 or not lr > 0:
        raise PretrainError("need --epochs >= 1, --batch-size >= 2 and --lr > 0")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise PretrainError("--device cuda: no CUDA device is available")
    log = log or (lambda m: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = read_tag_manifest(manifest)
    train_idx = _train_subset(data, train_size, seed)
    valid_idx = data.index("valid")
    if len(train_idx) < batch_size or len(valid_idx) == 0:
        raise PretrainError(f"need at least {batch_size} training and 1 validation item "
                            f"(have {len(train_idx)} / {len(valid_idx)})")
    args = {"manifest": str(Path(manifest).resolve()), "input": cfg.to_dict(), "epochs": epochs,
            "batch_size": batch_size, "lr": lr, "seed": seed, "train_size": train_size,
            "clip_seconds": clip_seconds, "tags": list(data.tags)}
    ckpt_path = out / "checkpoint.pt"

    mel = mel_cache(data, clip_seconds, cache_dir or Path(manifest).resolve().parent / ".convfeat-cache",
                    workers=workers, progress=(lambda d, n: progress("spectrograms", d, n)) if progress else None)
    model = build_model(cfg, data.tags, mel.shape[-1], seed=seed, name=name).to(device)
    if cfg.weighting == "per-frequency":
        # band statistics from the training items only
        model.input_transform.fit(np.asarray(mel[train_idx[s:s + 64]]) for s in range(0, len(train_idx), 64))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    state = {"epoch": 0, "history": [], "best_auc": -1.0, "best_epoch": 0, "best_state": None}
    if ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location=device, weights_only=True)
        if ck["args"] != json.dumps(args, sort_keys=True):
            raise PretrainError(f"{out} holds a run with other settings; use another --out or delete it")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        state = {k: ck[k] for k in ("epoch", "history", "best_auc", "best_epoch", "best_state")}
        state["history"] = json.loads(state["history"])
        log(f"resuming after epoch {state['epoch']}")
    labels = torch.from_numpy(data.labels)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    steps = -(-len(train_idx) // batch_size)
    t0 = time.perf_counter()
    for epoch in range(state["epoch"] + 1, epochs + 1):
        model.train()
        order = np.random.default_rng([seed, epoch]).permutation(train_idx)
        total, n_seen = 0.0, 0
        for b in range(steps):
            idx = np.sort(order[b * batch_size:(b + 1) * batch_size])
            if len(idx) < 2:  # batch statistics need two items
                continue
            x = model.input_transform(torch.from_numpy(np.asarray(mel[idx]))[:, None].to(device))
            loss = loss_fn(model.forward_input(x)["logits"], labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            n_seen += len(idx)
            if progress:
                progress(f"epoch {epoch}/{epochs}", b + 1, steps)
        val_auc = roc_auc_macro(data.labels[valid_idx], predict(model, mel, valid_idx, device=device))
        row = {"epoch": epoch, "train_loss": total / max(n_seen, 1), "valid_auc": val_auc,
               "seconds": round(time.perf_counter() - t0, 1)}
        state["history"].append(row)
        log(f"epoch {epoch}: train loss {row['train_loss']:.4f}, validation ROC-AUC {val_auc:.4f}")
        if val_auc > state["best_auc"]:
            state.update(best_auc=val_auc, best_epoch=epoch,
                         best_state={k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
        state["epoch"] = epoch
        _save_checkpoint(ckpt_path, {"args": json.dumps(args, sort_keys=True), "model": model.state_dict(),
                                     "optimizer": opt.state_dict(), "epoch": epoch,
                                     "history": json.dumps(state["history"]), "best_auc": state["best_auc"],
                                     "best_epoch": state["best_epoch"], "best_state": state["best_state"]})
    # export the best-validation weights
    model.load_state_dict(state["best_state"])
    model.eval()
    test_idx = data.index("test")
    test_auc = (roc_auc_macro(data.labels[test_idx], predict(model, mel, test_idx, device=device))
                if len(test_idx) else float("nan"))
    record = {"name": name or out.name,
              "training": {**args, "n_train": int(len(train_idx)), "n_valid": int(len(valid_idx)),
                           "n_test": int(len(test_idx)), "best_epoch": state["best_epoch"],
                           "valid_auc": state["best_auc"], "test_auc": test_auc, "history": state["history"],
                           "torch": torch.__version__},
              "corpus": _corpus_record(manifest)}
    save_trained(model.cpu(), out, record)
    return record


def _corpus_record(manifest) -> dict:
    f = Path(manifest).resolve().parent / "corpus.json"
    if f.is_file():
        try:
            d = json.loads(f.read_text())
            return {k: d[k] for k in d if k != "tags"}
        except (ValueError, OSError):
            return {}
    return {}
