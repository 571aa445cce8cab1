"""The offline demo: synthesise a few clips, extract features, tag them.

Needs no download and no ``../shared``: the clips come from the synthetic
corpus generator, the features from the model shipped inside the package
(``convfeat-synth``, in ``convfeat/models/shipped/``), beside the random-weights
twin and MFCC (and the published ``choi2017`` when its weights are installed).
Without the shipped model the demo fails with one line saying so: every install
carries it (package data), so its absence is a broken install, not a variant.
"""
from __future__ import annotations

from pathlib import Path

SHIPPED = "convfeat-synth"


def run_demo(out: str | Path = "convfeat-demo", n_clips: int = 8, seed: int = 2026, log=print) -> dict:
    """Render ``n_clips`` corpus clips into ``out/corpus``, extract them into
    ``out/features.h5`` and tag them with the shipped model.

    Returns ``{"features": path, "sets": [...], "clips": [{id, true, predicted}],
    "precision_at_k": float}``: precision of the shipped model's top-k tags,
    k = the number of true tags of each clip.  Raises :class:`ConvfeatError`
    (one line for the user, before anything is rendered) when the shipped model
    is missing.  ``log`` is accepted for callers that pass one; nothing is logged
    now that the demo has no degraded mode.
    """
    from .training import corpus
    from .api import tag
    from .extraction import SetSpec, extract
    from .models.weights import WeightsNotFound, resolve

    require_shipped_model()
    out = Path(out)
    manifest = corpus.synth(out / "corpus", n=n_clips, seed=seed, duration=10.0)
    sets = [SetSpec(SHIPPED), SetSpec("random"), SetSpec("mfcc")]
    try:
        resolve("choi2017")
        sets.append(SetSpec("choi2017"))
    except WeightsNotFound:
        pass
    h5 = out / "features.h5"
    summary = extract([out / "corpus" / "manifest.csv"], h5, sets=sets)
    result = {"features": h5, "sets": summary.feature_sets, "clips": []}

    import soundfile as sf

    hits = total = 0
    for _, row in manifest.iterrows():
        truth = row["tags"].split(";")
        y, sr = sf.read(out / "corpus" / row["path"], dtype="float32")
        probs = tag(y, sr, model=SHIPPED)
        predicted = list(probs)[: len(truth)]
        hits += len(set(predicted) & set(truth))
        total += len(truth)
        result["clips"].append({"id": row["id"], "true": truth, "predicted": predicted,
                                "probabilities": [probs[t] for t in predicted]})
    result["precision_at_k"] = hits / max(total, 1)
    return result


def require_shipped_model() -> None:
    """Raise :class:`ConvfeatError` (what is missing, how to fix it; one line) unless the
    shipped model is installed."""
    from .errors import ConvfeatError
    from .models.trained import SHIPPED_DIR, shipped_models

    if SHIPPED not in shipped_models():
        raise ConvfeatError(
            f"the shipped model {SHIPPED} is missing (no {SHIPPED_DIR / SHIPPED / 'model.json'}): this "
            f"convfeat install is incomplete; reinstall convfeat (its wheel and `pip install .` carry the "
            f"model), or in a source checkout restore convfeat/models/shipped/ or retrain it with `make model`")
