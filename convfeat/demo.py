"""The offline demo: synthesise a few clips, extract features, tag them.

Needs no download and no ``../shared``: the clips come from the synthetic
corpus generator, the features from the model shipped in ``models/``
(``convfeat-synth``), beside the random-weights twin and MFCC (and the
published ``choi2017`` when its weights are installed).
"""
from __future__ import annotations

from pathlib import Path

SHIPPED = "convfeat-synth"


def run_demo(out: str | Path = "convfeat-demo", n_clips: int = 8, seed: int = 2026, log=print) -> dict:
    """Render ``n_clips`` corpus clips into ``out/corpus``, extract them into
    ``out/features.h5`` and tag them with the shipped model.

    Returns ``{"features": path, "sets": [...], "clips": [{id, true, predicted}],
    "precision_at_k": float}``: precision of the shipped model's top-k tags,
    k = the number of true tags of each clip.
    """
    from .training import corpus
    from .api import tag
    from .extraction import SetSpec, extract
    from .models import shipped_models
    from .models.weights import WeightsNotFound, resolve

    out = Path(out)
    manifest = corpus.synth(out / "corpus", n=n_clips, seed=seed, duration=10.0)
    sets = [SetSpec("random"), SetSpec("mfcc")]
    shipped = SHIPPED in shipped_models()
    if shipped:
        sets.insert(0, SetSpec(SHIPPED))
    try:
        resolve("choi2017")
        sets.append(SetSpec("choi2017"))
    except WeightsNotFound:
        pass
    h5 = out / "features.h5"
    summary = extract([out / "corpus" / "manifest.csv"], h5, sets=sets)
    result = {"features": h5, "sets": summary.feature_sets, "clips": []}
    if not shipped:
        log(f"(no shipped model in models/{SHIPPED}: features from random weights and MFCC only)")
        return result

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
