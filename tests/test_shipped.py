"""The model shipped in models/ and the offline demo."""
import numpy as np
import pytest
from typer.testing import CliRunner

from convfeat.training import corpus
from convfeat.models import shipped_models

pytestmark = pytest.mark.skipif("convfeat-synth" not in shipped_models(),
                                reason="models/convfeat-synth is not in this checkout")


def test_shipped_model_loads_and_tags_held_out_corpus_clips():
    from sklearn.metrics import roc_auc_score

    from convfeat import load_model
    from convfeat.api import _forward, prepare

    net = load_model("convfeat-synth")
    assert net.tag_names == corpus.TAGS
    assert net.provenance["weights_sha256"] and net.bn_mode == "stored"
    # clips of the corpus's test split (seed 0) that the model never trained on
    idx = [i for i in range(2500) if corpus.clip_split(i, 0) == "test"][:24]
    clips, labels = [], []
    for i in idx:
        y, meta = corpus.render_clip(i, seed=0)
        clips.append(prepare(y, 12000))
        labels.append([t in meta["tags"] for t in corpus.TAGS])
    probs = _forward(net, np.stack(clips))["tags"]
    labels = np.array(labels)
    aucs = [roc_auc_score(labels[:, j], probs[:, j]) for j in range(labels.shape[1])
            if 0 < labels[:, j].sum() < len(idx)]
    # far above chance (0.5): the stored preprocessing and weights work together
    assert np.mean(aucs) > 0.8, np.mean(aucs)


def test_demo_extracts_with_the_shipped_model(tmp_path):
    from convfeat import embed, load
    from convfeat.cli import app

    res = CliRunner().invoke(app, ["demo", "-o", str(tmp_path / "d"), "--clips", "3"])
    assert res.exit_code == 0, res.output
    assert "convfeat-synth" in res.output and "precision of the top tags" in res.output
    ids, X = load(tmp_path / "d" / "features.h5", "convfeat-synth")
    assert X.shape == (3, 160)
    import soundfile as sf

    y, sr = sf.read(tmp_path / "d" / "corpus" / "audio" / "000000.flac", dtype="float32")
    k = list(ids).index("000000")
    np.testing.assert_allclose(X[k], embed(y, sr, model="convfeat-synth"), rtol=1e-4, atol=1e-5)
