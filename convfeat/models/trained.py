"""Models trained by ``convfeat pretrain``: a folder with ``model.json`` and ``weights.npz``.

``model.json`` holds the architecture (:class:`CompactConfig`, including the
input preprocessing), the tag vocabulary, the corpus and training record;
``weights.npz`` holds plain float32 arrays (the state dict), read with
``allow_pickle=False``: nothing is unpickled.  The model is a first-class
convfeat model: ``load_model(PATH)``, ``convfeat extract -m PATH``, and the
shipped ones by name (``convfeat-synth``): package data of :mod:`convfeat.models.shipped`,
found through ``importlib.resources`` (:data:`SHIPPED_DIR`), so a wheel, ``pip install .``,
an editable install and a source checkout all have them.
"""
from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ..fileio import write_bytes_atomic
from .compact import CompactConfig, CompactConvnet
from ..errors import InputError

FORMAT = "convfeat-model/1"
#: where shipped models live: <name>/ folders in the package ``convfeat.models.shipped``
#: (``convfeat/models/shipped/`` in the repository), wherever convfeat is installed.  A plain
#: Path: convfeat is installed as files (pip unpacks wheels), not imported from a zip.
SHIPPED_DIR = Path(str(resources.files("convfeat.models.shipped")))


def shipped_models() -> list[str]:
    """Names of the shipped models (folders of :data:`SHIPPED_DIR` holding a ``model.json``)."""
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / "model.json").is_file())


def model_dir(name_or_path: str | Path) -> Path | None:
    """The folder of a trained model given by shipped name or path (folder or its
    ``model.json``); None when it is neither."""
    p = Path(name_or_path)
    if p.name == "model.json" and p.is_file():
        return p.parent
    if (p / "model.json").is_file():
        return p
    if isinstance(name_or_path, str) and "/" not in name_or_path and (SHIPPED_DIR / name_or_path / "model.json").is_file():
        return SHIPPED_DIR / name_or_path
    return None


def save_trained(model: CompactConvnet, out_dir: str | Path, record: dict | None = None) -> Path:
    """Write ``model`` (weights + config + ``record``) to ``out_dir``; → the folder."""
    import io

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    np.savez(buf, **state)
    write_bytes_atomic(out / "weights.npz", buf.getvalue())
    meta = {"format": FORMAT, "config": model.config.to_dict(),
            "tags": list(model.tag_names or []),
            "weights_sha256": hashlib.sha256((out / "weights.npz").read_bytes()).hexdigest(),
            **(record or {})}
    write_bytes_atomic(out / "model.json", (json.dumps(meta, indent=2, sort_keys=False) + "\n").encode())
    return out


def read_meta(path: str | Path) -> dict:
    d = model_dir(path)
    if d is None:
        raise FileNotFoundError(f"{path}: not a trained convfeat model (no model.json)")
    meta = json.loads((d / "model.json").read_text())
    if meta.get("format") != FORMAT:
        raise InputError(f"{d}/model.json: unknown format {meta.get('format')!r} (expected {FORMAT})")
    return meta


def load_trained(path: str | Path, device: str | torch.device = "cpu") -> CompactConvnet:
    """The trained model in ``path`` (a shipped name, a folder or its model.json),
    in inference mode with stored BN statistics; sha256 of the weights checked."""
    d = model_dir(path)
    meta = read_meta(path)
    raw = (d / "weights.npz").read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != meta["weights_sha256"]:
        raise InputError(f"{d}/weights.npz: sha256 {digest[:12]}… does not match model.json "
                         f"({meta['weights_sha256'][:12]}…); the folder is corrupt or was edited")
    config = CompactConfig.from_dict(meta["config"])
    model = CompactConvnet(config, bn_mode="stored", tag_names=tuple(meta["tags"]) or None)
    with np.load(d / "weights.npz", allow_pickle=False) as z:
        state = {k: torch.from_numpy(z[k]) for k in z.files}
    missing = set(model.state_dict()) - set(state)
    if missing:
        raise InputError(f"{d}/weights.npz lacks {sorted(missing)[:3]}…")
    model.load_state_dict(state)
    if model.input_transform is not None:
        model.input_transform.fitted = True
    model.provenance = {"model": meta.get("name", d.name), "bn_mode": "stored", "weights": str(d / "weights.npz"),
                        "weights_sha256": digest, "config": config.to_dict(), "layout": FORMAT,
                        "training": meta.get("training", {}), "corpus": meta.get("corpus", {})}
    return model.eval().to(device)
