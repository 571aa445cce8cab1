"""Reports of an evaluation: the Markdown table, and the report folder (report.md, report.json, CSV
tables, confusion matrices and the layer-subset figure)."""
from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .heads import describe_point
from .labels import Labels
from .options import PROTOCOL_LABELS
from .protocol import Result
from .stats import BEST_PAIRING

_BEST = " (its best subset)"


# -- numbers and tables ---------------------------------------------------------------------
def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}"


def _fmt_p(p) -> str:
    if p is None or not np.isfinite(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def format_table(results: Sequence[Result], tests: Sequence[dict] = (), digits: int = 3) -> str:
    """Markdown table: one row per (target, feature) with every metric's score ± std [95 % CI]."""
    if not results:
        return ""
    metrics = results[0].metrics
    best_test = {}
    for t in tests:
        if t["metric"] == results[0].primary:
            best_test.setdefault((t["target"], t["feature"]), []).append(t)
    multi_target = len({r.target for r in results}) > 1
    head = (["target"] if multi_target else []) + ["features", "d"]
    for m in metrics:
        head += [m, "± std", "95% CI"]
    head += ["vs baseline (Δ, p)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        row = ([r.target] if multi_target else []) + [r.feature, str(r.n_features)]
        for m in metrics:
            s = r.summary(m)
            row += [_fmt(s["score"], digits), _fmt(s["std"], digits),
                    f"[{_fmt(s['ci95'][0], digits)}, {_fmt(s['ci95'][1], digits)}]"]
        vs = best_test.get((r.target, r.feature), [])
        row.append("; ".join(f"{t['baseline']}{_BEST if t.get('pairing') == BEST_PAIRING else ''}: "
                             f"{t['mean_diff']:+.{digits}f}, p {_fmt_p(t['p'])}" for t in vs) or "")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def json_safe(o):
    """``o`` with NumPy values as Python ones and non-finite floats as None (for ``json.dumps``)."""
    if isinstance(o, dict):
        return {str(k): json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_safe(v) for v in o]
    if isinstance(o, np.ndarray):
        return json_safe(o.tolist())
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


# -- figures --------------------------------------------------------------------------------
def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("_") or "x"


def _plot_confusion(r: Result, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    labels = r.classes
    cm = confusion_matrix(r.y_true.astype(str), r.y_pred.astype(str), labels=labels)
    n = len(labels)
    size = max(4.0, 0.5 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=90 if n > 4 else 0)
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = cm.max() if cm.size else 0
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if cm[i, j] > top / 2 else "black")
    ax.set_title(f"{r.feature} ({r.protocol}): {r.primary} {r.score:.3f}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_target(ax, rs: list, target: str, baselines: Sequence[str]) -> None:
    """Bars (score, 95 % CI) of one target's non-baseline results; baselines as dashed lines."""
    bars = [r for r in rs if r.feature not in baselines]
    names = [r.feature for r in bars]
    vals = [r.score for r in bars]
    errs = []
    for r in bars:
        lo, hi = r.summary()["ci95"]
        errs.append([max(0.0, r.score - lo) if np.isfinite(lo) else 0.0,
                     max(0.0, hi - r.score) if np.isfinite(hi) else 0.0])
    errs = np.array(errs).T if errs else None
    ax.bar(range(len(bars)), vals, yerr=errs, color="#4878a8", capsize=2)
    for k, r in enumerate(r for r in rs if r.feature in baselines):
        ax.axhline(r.score, color=f"C{k + 1}", linestyle="--", label=f"{r.feature} {r.score:.3f}")
    ax.set_xticks(range(len(bars)), names, rotation=90, fontsize=8)
    metric = rs[0].primary
    ax.set_ylabel(metric)
    lo = min([r.score for r in rs] + [0.0 if metric != "roc_auc" else 0.5])
    ax.set_ylim(max(lo - 0.05, -1.0) if metric == "r2" else max(0.0, min(vals + [1.0]) - 0.15), None)
    ax.set_title(f"{target + ': ' if target else ''}{rs[0].protocol} protocol, {metric} (error bars: 95% CI)",
                 fontsize=10)
    if any(r.feature in baselines for r in rs):
        ax.legend(fontsize=8, loc="lower right")


def _plot_layers(results: Sequence[Result], baselines: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = list(dict.fromkeys(r.target for r in results))
    fig, axes = plt.subplots(len(targets), 1, figsize=(max(6.0, 0.35 * len(results) / len(targets) + 2),
                                                       3.2 * len(targets)), squeeze=False)
    for ax, target in zip(axes[:, 0], targets):
        _plot_target(ax, [r for r in results if r.target == target], target, baselines)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _figures(out: Path, results, baselines, meta: dict, plots: bool, files: dict) -> tuple:
    """Write confusion/*.png and layers.png (when matplotlib is there) → (plots still on, PNG paths)."""
    pngs = []
    if plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            plots = False
            meta.setdefault("notes", []).append("figures skipped: matplotlib is not installed "
                                                "(pip install matplotlib)")
    if plots:
        cls = [r for r in results if r.task == "classification"]
        if cls:
            (out / "confusion").mkdir(exist_ok=True)
            for r in cls:
                p = out / "confusion" / f"{(_safe(r.target) + '__') if r.target else ''}{_safe(r.feature)}.png"
                _plot_confusion(r, p)
                files[str(p.relative_to(out))] = p
                pngs.append(p.relative_to(out))
        subsets = [r for r in results if re.search(r"/[1-5]+$", r.feature)]
        if len({r.feature for r in subsets}) >= 2:
            _plot_layers(results, baselines, out / "layers.png")
            files["layers.png"] = out / "layers.png"
    return plots, pngs


# -- CSV tables -------------------------------------------------------------------------------
def _summary_rows(r: Result) -> list:
    rows = []
    for m in r.metrics:
        s = r.summary(m)
        rows.append({"target": r.target, "feature": r.feature, "protocol": r.protocol, "head": r.head,
                     "metric": m, "score": s["score"], "mean": s["mean"], "std": s["std"],
                     "ci95_low": s["ci95"][0], "ci95_high": s["ci95"][1], "n_folds": s["n_folds"],
                     "n_items": len(r.ids), "n_features": r.n_features})
    return rows


def _fold_rows(r: Result) -> list:
    """One row per outer fold, numbered from 1 (as ``predictions.csv`` and the manifests' fold columns)."""
    rows = []
    for f in range(len(r.n_test)):
        row = {"target": r.target, "feature": r.feature, "fold": f + 1, "n_train": int(r.n_train[f]),
               "n_test": int(r.n_test[f])}
        row.update({m: float(r.fold_scores[m][f]) for m in r.metrics})
        row["params"] = describe_point(r.params[f] if r.protocol == "nested" else r.params[0])
        rows.append(row)
    return rows


def _prediction_rows(r: Result, labels: Labels | None) -> list:
    """One row per test item (per item × tag for tags, with the decision score)."""
    rows = []
    if r.task == "multilabel":
        names = (labels.names if labels is not None else [str(j) for j in range(r.y_true.shape[1])])
        for i in range(len(r.ids)):
            for j, tag in enumerate(names):
                rows.append({"target": r.target, "feature": r.feature, "id": r.ids[i], "fold": int(r.fold_of[i]),
                             "tag": tag, "y_true": int(r.y_true[i, j]), "score": float(r.y_pred[i, j])})
    else:
        for i in range(len(r.ids)):
            rows.append({"target": r.target, "feature": r.feature, "id": r.ids[i], "fold": int(r.fold_of[i]),
                         "y_true": r.y_true[i], "y_pred": r.y_pred[i]})
    return rows


_TEST_COLUMNS = ["target", "feature", "baseline", "pairing", "metric", "mean_diff", "ci95_low", "ci95_high", "t", "p", "p_ttest",
                 "p_wilcoxon", "wins", "ties", "losses", "n_folds", "method",
                 "wilcoxon_note"]


def _tables(out: Path, results, tests, labels, files: dict) -> None:
    """summary.csv, folds.csv, tests.csv and predictions.csv."""
    import pandas as pd

    rows = [row for r in results for row in _summary_rows(r)]
    frows = [row for r in results for row in _fold_rows(r)]
    prow = [row for r in results for row in _prediction_rows(r, labels)]
    pd.DataFrame(rows).to_csv(out / "summary.csv", index=False)
    files["summary.csv"] = out / "summary.csv"
    pd.DataFrame(frows).to_csv(out / "folds.csv", index=False)
    files["folds.csv"] = out / "folds.csv"
    trows = [{**{k: t.get(k) for k in _TEST_COLUMNS if k not in ("ci95_low", "ci95_high")}, "ci95_low": t["ci95"][0],
              "ci95_high": t["ci95"][1]} for t in tests]
    pd.DataFrame(trows, columns=_TEST_COLUMNS).to_csv(out / "tests.csv", index=False)
    files["tests.csv"] = out / "tests.csv"
    pd.DataFrame(prow).to_csv(out / "predictions.csv", index=False)
    files["predictions.csv"] = out / "predictions.csv"


# -- Markdown ---------------------------------------------------------------------------------
def _md_head(meta: dict, labels: Labels | None) -> list:
    md = [f"# convfeat evaluate: {meta.get('title', 'report')}", ""]
    md.append(f"**Protocol: {meta.get('protocol')}** — {meta.get('protocol_label')}.")
    md.append("")
    for key in ("task", "head", "splits", "grid", "labels_source", "features_files", "inner"):
        if meta.get(key):
            md.append(f"- {key.replace('_', ' ')}: {meta[key]}")
    if labels is not None:
        md.append(f"- labels: {labels.matched_on}; {len(labels)} labelled items")
        for line in labels.summary_lines():
            md.append(f"- **{line}**")
    for line in meta.get("notes", []):
        md.append(f"- {line}")
    return md


def _md_scores(meta: dict, results, tests) -> list:
    md = ["", "## Scores", "",
          "Score = " + ("the best grid point's mean CV score (the study's figure; folds weighted by size)"
                        if meta.get("protocol") == "study" else "mean of the outer-fold scores")
          + "; ± std over folds; 95% CI = corrected resampled t interval over folds (Nadeau & Bengio; "
          "a bootstrap over test items for a single split).", ""]
    md.append(format_table(results, tests))
    if tests:
        md += ["", "## Paired tests against baselines", "",
               "Same folds, like for like: a feature is paired with a baseline's same layer subset, or, when the "
               f"baseline lacks it, with the baseline's best subset (marked{_BEST}). Δ = feature − baseline; p of "
               "the corrected resampled t-test (plain paired t-test and Wilcoxon beside it).", "",
               "| target | features | baseline | metric | Δ | 95% CI | p | p (t-test) | p (Wilcoxon) | W/T/L |",
               "|---|---|---|---|---|---|---|---|---|---|"]
        for t in tests:
            best = _BEST if t.get("pairing") == BEST_PAIRING else ""
            md.append(f"| {t['target']} | {t['feature']} | {t['baseline']}{best} | {t['metric']} | "
                      f"{t['mean_diff']:+.3f} | [{_fmt(t['ci95'][0])}, {_fmt(t['ci95'][1])}] | {_fmt_p(t['p'])} | "
                      f"{_fmt_p(t['p_ttest'])} | {_fmt_p(t['p_wilcoxon'])}{'*' if t.get('wilcoxon_note') else ''} | "
                      f"{t['wins']}/{t['ties']}/{t['losses']} |")
        why = sorted({t["wilcoxon_note"] for t in tests if t.get("wilcoxon_note")})
        if why:
            md += [""] + [f"\\* {w}." for w in why]
    return md


def _md_params(results) -> list:
    md = ["", "## Chosen hyper-parameters", ""]
    for r in results:
        if r.protocol == "study":
            md.append(f"- {r.target + ' / ' if r.target else ''}{r.feature}: {describe_point(r.params[0])}")
        else:
            counts: dict = {}
            for p in r.params:
                counts[describe_point(p)] = counts.get(describe_point(p), 0) + 1
            md.append(f"- {r.target + ' / ' if r.target else ''}{r.feature}: "
                      + "; ".join(f"{k} ({v} fold{'s' if v > 1 else ''})" for k, v in counts.items()))
    return md


def _md_tail(meta: dict, plots: bool, files: dict, pngs: list) -> list:
    md = []
    if plots and ("layers.png" in files or pngs):
        md += ["", "## Figures", ""]
        if "layers.png" in files:
            md.append("![layer subsets](layers.png)")
        for p in pngs:
            md.append(f"- [{p}]({p})")
    md += ["", "Files: summary.csv, folds.csv (per-fold scores), tests.csv, predictions.csv (per item), report.json.",
           f"convfeat {meta['convfeat_version']}, scikit-learn {meta['sklearn_version']}."]
    return md


# -- the report folder ------------------------------------------------------------------------
def _full_meta(meta: dict | None, results) -> dict:
    """``meta`` with the protocol, head, task, splits and versions filled in where not given."""
    import sklearn

    from .. import __version__

    meta = dict(meta or {})
    if results:
        r0 = results[0]
        meta.setdefault("protocol", r0.protocol)
        meta.setdefault("protocol_label", PROTOCOL_LABELS[r0.protocol])
        meta.setdefault("head", r0.head)
        meta.setdefault("task", r0.task)
        meta.setdefault("splits", r0.splits)
    meta.setdefault("convfeat_version", __version__)
    meta.setdefault("sklearn_version", sklearn.__version__)
    return meta


def write_report(out_dir, results: Sequence[Result], tests: Sequence[dict] = (), *, labels: Labels | None = None,
                 baselines: Sequence[str] = (), meta: dict | None = None, plots: bool = True) -> dict:
    """Write the report of an evaluation into ``out_dir``.

    Files: ``report.md`` (tables and notes), ``report.json`` (everything),
    ``summary.csv`` (one row per feature × metric: score, mean, std, 95 % CI),
    ``folds.csv`` (per-fold scores, sizes and chosen hyper-parameters),
    ``tests.csv`` (paired tests against baselines), ``predictions.csv``
    (per-item predictions; for tags, one row per item × tag with the score),
    ``confusion/<feature>.png`` (classification) and ``layers.png`` (when
    several layer subsets were evaluated).

    Returns
    -------
    dict
        name -> path of every file written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict = {}
    meta = _full_meta(meta, results)
    _tables(out, results, tests, labels, files)
    plots, pngs = _figures(out, results, baselines, meta, plots, files)
    doc = {"meta": meta, "labels": labels.report() if labels is not None else None,
           "results": [r.to_dict() for r in results], "tests": list(tests)}
    (out / "report.json").write_text(json.dumps(json_safe(doc), indent=2))
    files["report.json"] = out / "report.json"
    md = _md_head(meta, labels) + _md_scores(meta, results, tests) + _md_params(results) + \
        _md_tail(meta, plots, files, pngs)
    (out / "report.md").write_text("\n".join(md) + "\n")
    files["report.md"] = out / "report.md"
    return files
