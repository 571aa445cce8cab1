"""The study's own features (../shared/paper), imported and scored with `--protocol study`.

Reproduces two published figures of Choi et al. 2017 (``paper/results.csv``):
gtzan_genre ``12345`` = 0.898 exactly (to three decimals) and emoMusic_a
``12345`` = 0.650.  Skips with the reason when ../shared is absent.
docs/study_reproduction.md has every figure and the explanation of each
difference.
"""
from __future__ import annotations

import pandas as pd
import pytest

from conftest import shared_path
from convfeat import evaluation as ev
from convfeat.store.importer import import_study

# Tolerance for emoMusic_a: results.csv gives 4 decimals (0.6500) and our run gives 0.65005 (r² of the
# best grid point, rbf C=32 gamma=2^-13, folds weighted by size as GridSearchCV(iid=True) did in 2017).
# Rounding alone allows 5e-5; 2e-4 leaves room for libsvm's last-bit differences across platforms
# (different BLAS/libm builds) and is still 100 times tighter than the issue's ±0.02.
EMO_TOLERANCE = 2e-4


@pytest.fixture(scope="module")
def study_files(tmp_path_factory):
    """(import(task) → the task's imported files, the published results).  Each task is imported
    when a test first asks for it, so that a test process imports only the tasks it scores."""
    paper = shared_path("paper")
    imported = {}

    def files(task):
        if task not in imported:
            imported[task] = import_study(paper, tmp_path_factory.mktemp("study"), [task])[task]
        return imported[task]

    return files, pd.read_csv(paper / "results.csv")


def _published(published, task, features):
    row = published[(published.task == task) & (published.features == features)]
    return float(row.score.iloc[0])


def test_gtzan_genre_12345_is_0898(study_files):
    files, published = study_files
    info = files("gtzan_genre")
    # n_jobs=1: the scores do not depend on it, and under `make test` both cores are busy already
    out = ev.run([info["features"]], info["labels"], label_column="label", features="choi2017", layers="12345",
                 protocol="study", n_jobs=1)
    (r,) = out["results"]
    assert out["labels"].items_without_labels == [] and out["labels"].labels_without_items == []
    assert len(r.ids) == 1000 and r.n_features == 160
    assert _published(published, "gtzan_genre", "12345") == 0.898
    assert round(r.score, 3) == 0.898
    assert r.score == pytest.approx(0.898, abs=1e-12)  # 898 of 1000 items, folds of equal size


def test_emomusic_arousal_12345_is_0650(study_files):
    files, published = study_files
    info = files("emoMusic_a")
    # max_iter 1e5 instead of the default 1e6 keeps this test fast: only linear-kernel SVR points need more
    # (C >= 2: 1e6-8e6 libsvm iterations, ~1 s each per fold); their converged scores are 0.586-0.621, far
    # below the reported rbf point, which converges in a few thousand iterations (checked below).
    out = ev.run([info["features"]], info["labels"], target_columns="label_arousal", features="choi2017",
                 layers="12345", protocol="study", n_jobs=1, max_iter=100_000)
    (r,) = out["results"]
    assert len(r.ids) == 744 and r.metrics == ("r2", "rmse")
    assert _published(published, "emoMusic_a", "12345") == 0.65
    assert r.score == pytest.approx(0.650, abs=EMO_TOLERANCE)
    assert r.params[0]["kernel"] == "rbf"  # the reported point converged (fits stopped at the cap are not it)
    assert not any("REPORTED" in c for c in r.capped)


def test_study_folder_tasks_keep_their_names():
    """`import --study` finds tasks by their files; the three datasets of ../shared/paper keep the names the
    study used (results.csv's task column), and results.csv itself is not a task."""
    from convfeat.store.importer import STUDY_TASKS, study_tasks

    assert study_tasks(shared_path("paper")) == STUDY_TASKS


def test_gtzan_genre_block5_alone_reproduces(study_files):
    """On GTZAN (30-s clips) the released block-5 array is the published one: subset 5 alone gives the published
    0.788 (docs/study_reproduction.md, "Is a released task's block 5 the published one?")."""
    files, published = study_files
    info = files("gtzan_genre")
    out = ev.run([info["features"]], info["labels"], label_column="label", features="choi2017", layers="5",
                 protocol="study", n_jobs=1)
    (r,) = out["results"]
    assert _published(published, "gtzan_genre", "5") == 0.788
    assert r.score == pytest.approx(0.788, abs=1e-12)
