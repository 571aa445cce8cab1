"""Feature files → evaluation (what ``convfeat evaluate`` and ``convfeat run`` call): which feature sets
and layer subsets to evaluate, loading and aligning them with the labels, scoring, testing, reporting."""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from ..constants import LAYER_NAMES
from ..layers import parse_layers
from .heads import grid_for
from .labels import Labels, load_labels
from .options import DEFAULT_MAX_ITER, EvaluationError, Options
from .protocol import sweep
from .report import write_report
from .splits import make_splits

DEFAULT_GROUP_COLUMN = "group"   # the group column the dataset adapters write (convfeat.datasets)
from .stats import compare

# The feature files are read lazily (inside the functions): convfeat.store.read imports h5py, which
# `import convfeat.evaluation` must not pull in.


# -- which features -----------------------------------------------------------------------------
def layer_subsets(spec: str = "all") -> list[str]:
    """``"all"`` → the 31 non-empty subsets of blocks 1-5 (``"12345"``, ``"1234"``, …, ``"5"``);
    otherwise a comma-separated list (``"12345,123,5"``), each normalised to ascending digits."""
    blocks = range(1, len(LAYER_NAMES) + 1)
    text = str(spec).strip().lower()
    if text == "all":
        return ["".join(map(str, c)) for k in range(len(blocks), 0, -1) for c in combinations(blocks, k)]
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if not (part.isascii() and part.isdigit()):
                raise ValueError(part)
            names = parse_layers(part)
        except ValueError:
            raise EvaluationError(f"layers must be digits 1-5 such as 12345 or 135 (comma-separated), or all; "
                                  f"got {part!r}") from None
        norm = "".join(str(LAYER_NAMES.index(name) + 1) for name in names)
        if norm not in out:
            out.append(norm)
    if not out:
        raise EvaluationError("no layer subset given")
    return out


@dataclass
class FeatureSpec:
    """One feature to evaluate: components ``(file, set)`` concatenated, and a layer subset."""

    label: str
    components: list          # [(file path, set name, is_convnet)]
    layers: str | None        # "12345" … for convnet components; None when there is none

    @property
    def baseline_like(self) -> bool:
        return all(s.startswith(("mfcc", "random")) for _, s, _ in self.components)


def _file_sets(files) -> list[tuple[str, str, bool]]:
    """(file, set, is_convnet) of every set of every file, in order."""
    from ..store.read import info

    out = []
    for f in files:
        d = info(f)
        for name, s in d["sets"].items():
            out.append((str(f), name, any(k in LAYER_NAMES for k in s["datasets"])))
    return out


def _resolve_set(token: str, available: list) -> tuple[str, str, bool]:
    """The ``(file, set, is_convnet)`` a token (``set`` or ``FILE:set``) names."""
    token = token.strip()
    qual = None
    if ":" in token:
        qual, token = token.rsplit(":", 1)
    hits = [a for a in available if a[1] == token and (qual is None or qual in (a[0], Path(a[0]).name, Path(a[0]).stem))]
    if not hits:
        names = sorted({a[1] for a in available})
        raise EvaluationError(f"no feature set {token!r}{' in ' + qual if qual else ''}; available: {', '.join(names)}")
    if len(hits) > 1:
        raise EvaluationError(f"feature set {token!r} is in several files ({', '.join(Path(h[0]).name for h in hits)}); "
                              f"write FILE:{token}, e.g. {Path(hits[0][0]).stem}:{token}")
    return hits[0]


def _tokens(features, available: list) -> list[str]:
    """The feature tokens asked for; default: every set (``FILE:set`` where several files hold the name)."""
    if features is None or features == "" or features == []:
        return [a[1] if sum(b[1] == a[1] for b in available) == 1 else f"{Path(a[0]).stem}:{a[1]}"
                for a in available]
    if isinstance(features, str):
        return [t.strip() for t in features.split(",") if t.strip()]
    return [str(t).strip() for t in features]


def feature_specs(files, features: str | Sequence[str] | None = None, layers: str = "12345") -> list[FeatureSpec]:
    """The feature sets to evaluate.

    ``features``: comma-separated set names (``"choi2017,random,mfcc"``;
    ``a+b`` concatenates; ``FILE:set`` picks a file when several hold the name;
    ``set/135`` gives a token its own layer subsets instead of ``layers``);
    default every set of every file.  ``layers``: ``"12345"``, a comma list
    (``"12345,123,5"``) or ``"all"`` — all 31 subsets of each convnet set, plus
    ``mfcc`` and ``mfcc+<set>/12345`` when a set named ``mfcc`` is present.
    """
    available = _file_sets(files)
    if not available:
        raise EvaluationError("the feature files hold no feature sets")
    tokens = _tokens(features, available)
    subsets = layer_subsets(layers)
    specs: list[FeatureSpec] = []
    seen = set()

    def add(label, comps, lay):
        if label not in seen:
            seen.add(label)
            specs.append(FeatureSpec(label, comps, lay))

    for tok in tokens:
        own = None
        if "/" in tok and re.fullmatch(r"[0-9]+|all", tok.rsplit("/", 1)[1]):
            tok, own = tok.rsplit("/", 1)  # a token with its own layer subset: "choi2017/135", "mfcc+choi2017/12345"
            own = layer_subsets(own)
        comps = [_resolve_set(t, available) for t in tok.split("+")]
        if any(c[2] for c in comps):
            for sub in own or subsets:
                add(f"{tok}/{sub}", comps, sub)
        else:
            add(tok, comps, None)
    if str(layers).strip().lower() == "all":
        mfcc = [a for a in available if a[1] == "mfcc"]
        if len(mfcc) == 1:
            add("mfcc", mfcc, None)
            for tok in tokens:
                comps = [_resolve_set(t, available) for t in tok.split("+")]
                if len(comps) == 1 and comps[0][2]:
                    add(f"mfcc+{tok}/12345", mfcc + comps, "12345")
    return specs


# -- loading ------------------------------------------------------------------------------------
def _load_spec(spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """(ids ``(n,)``, X ``(n, d)``) of a spec: components loaded and joined on item id, in the first one's order."""
    from ..store.read import load

    blocks = []
    for path, name, convnet in spec.components:
        blocks.append(load(path, features=name, layers=spec.layers if convnet else "12345"))
    if len(blocks) == 1:
        return blocks[0]
    common = set(blocks[0][0].tolist())
    for ids, _ in blocks[1:]:
        common &= set(ids.tolist())
    order = [i for i in blocks[0][0].tolist() if i in common]
    parts = []
    for ids, X in blocks:
        pos = {k: r for r, k in enumerate(ids.tolist())}
        parts.append(X[[pos[i] for i in order]])
    return np.asarray(order, dtype=str), np.concatenate(parts, axis=1)


def _load_all(files: list, specs: list) -> tuple[dict, list, list]:
    """(label -> (ids, X), the ids every spec has in the first spec's order, notes about the others)."""
    loaded = {spec.label: _load_spec(spec) for spec in specs}
    common = None
    for ids, _ in loaded.values():
        common = set(ids.tolist()) if common is None else common & set(ids.tolist())
    notes = []
    union = set().union(*[set(ids.tolist()) for ids, _ in loaded.values()])
    if len(union) > len(common):
        notes.append(f"{len(union) - len(common)} items lack features in some evaluated set and are not evaluated "
                     f"(e.g. {sorted(union - common)[0]!r})")
    first_ids = loaded[specs[0].label][0].tolist()
    return loaded, [i for i in first_ids if i in common], notes


def _match_labels(files: list, labels, item_ids: list, columns: dict) -> tuple[Labels, list]:
    """The labels of ``item_ids`` from the manifest ``labels`` (default: the metadata stored in the first file),
    and notes (a group column used by default, :func:`_default_groups`)."""
    from ..store.read import items_table

    paths_by_id = {}
    tables = [items_table(f) for f in files]
    for t in tables:
        paths_by_id.update(dict(zip(t["id"], t["path"])))
    item_paths = [paths_by_id.get(i, i) for i in item_ids]
    manifest = labels
    if manifest is None:
        manifest = tables[0]
        source = f"metadata stored in {Path(files[0]).name}"
    else:
        source = str(manifest)
    columns, note = _default_groups(manifest, columns)
    lab = load_labels(manifest, item_ids, item_paths, **columns)
    lab.source = source
    if len(lab) < 2:
        raise EvaluationError(f"only {len(lab)} items have both features and labels")
    return lab, [note] if note else []


def _default_groups(manifest, columns: dict) -> tuple[dict, str]:
    """``columns`` with ``group_column="group"`` when predefined folds or a split are given without a group
    column and the manifest has a ``group`` column (the datasets' adapters write one: fsID, artist, speaker, …),
    so that the inner folds of nested CV keep every group on one side; and the note that says so ("" if not)."""
    if columns.get("group_column") or not (columns.get("fold_column") or columns.get("split_column")):
        return columns, ""
    from .labels import _read_manifest

    df = manifest if not isinstance(manifest, (str, Path)) else _read_manifest(manifest)[0]
    if DEFAULT_GROUP_COLUMN not in df.columns:
        return columns, ""
    return ({**columns, "group_column": DEFAULT_GROUP_COLUMN},
            f"group column {DEFAULT_GROUP_COLUMN!r} found in the labels: inner folds are group-aware "
            "(--group-column names another)")


def _baselines(specs: list, baselines) -> list[str]:
    """Labels of the baseline specs: the ones named (by label or by set name), default the mfcc*/random* sets."""
    if baselines is None:
        return [s.label for s in specs if s.baseline_like]
    wanted = [b.strip() for b in (baselines.split(",") if isinstance(baselines, str) else baselines) if b.strip()]
    base = [s.label for s in specs if s.label in wanted or (len(s.components) == 1 and s.components[0][1] in wanted)]
    missing = [w for w in wanted if not any(w == s.label or (len(s.components) == 1 and s.components[0][1] == w)
                                             for s in specs)]
    if missing:
        raise EvaluationError(f"baseline {missing[0]!r} is not among the evaluated features "
                              f"({', '.join(s.label for s in specs)})")
    return base


def _report_meta(files, source, opts: Options, task, base, notes, results, title) -> dict:
    grid = grid_for(opts.head, task, opts.protocol, opts.scaler)
    return {"title": title or ", ".join(Path(f).name for f in files), "features_files": ", ".join(files),
            "labels_source": source, "grid": f"{len(grid)} points ({opts.head} head; scaler "
            f"{'/'.join('on' if s else 'off' for s in dict.fromkeys(p['scaler'] for p in grid))})",
            "inner": f"{opts.inner_folds} inner folds" if opts.protocol == "nested" else "",
            "baselines": base, "notes": notes + [f"{r.target + ' / ' if r.target else ''}{r.feature}: {c}"
                                                 for r in results for c in r.capped]}


# -- the entry point ------------------------------------------------------------------------------
def run(files, labels=None, *, label_column=None, target_columns=None, tags_column=None, tag_separator=None,
        key_column=None, fold_column=None, split_column=None, group_column=None, features=None, layers="12345",
        protocol="nested", n_folds=10, shuffle=False, seed=0, head="svm", scaler="auto", inner_folds=5,
        inner_search="halving", baselines=None, n_jobs=1, max_iter=DEFAULT_MAX_ITER, out_dir=None, plots=True, progress=None,
        title=None, meta=None) -> dict:
    """Evaluate the feature sets of feature file(s) against a labels manifest.

    The manifest columns (``label_column`` … ``group_column``) are those of
    :func:`load_labels`; ``features``/``layers`` choose the feature sets
    (:func:`feature_specs`); ``protocol`` … ``max_iter`` are the
    :class:`Options` (checked before any file is read); ``baselines`` the
    feature sets of the paired tests (default: sets named mfcc* or random*);
    ``out_dir`` the report folder (:func:`write_report`, with ``plots``,
    ``title`` and extra ``meta`` entries); see ``convfeat evaluate --help``.
    ``labels=None`` uses the metadata columns stored with the items (from the
    manifest given to ``convfeat extract``).

    Returns
    -------
    dict
        ``results`` (list of :class:`Result`), ``tests`` (paired tests),
        ``labels`` (:class:`Labels`), ``specs``, ``splits`` (:class:`Splits`),
        ``notes`` (list of str), ``baselines``, ``meta`` and ``files`` (report
        files, when ``out_dir``).
    """
    opts = Options(protocol=protocol, n_folds=n_folds, shuffle=shuffle, seed=seed, head=head, scaler=scaler,
                   inner_folds=inner_folds, inner_search=inner_search, n_jobs=n_jobs, max_iter=max_iter)
    columns = {"label_column": label_column, "target_columns": target_columns, "tags_column": tags_column,
               "tag_separator": tag_separator, "key_column": key_column, "fold_column": fold_column,
               "split_column": split_column, "group_column": group_column}
    out = _run_files(files, labels, opts, columns, features=features, layers=layers, baselines=baselines,
                    progress=progress, title=title, meta=meta)
    if out_dir is not None:
        out["files"] = write_report(out_dir, out["results"], out["tests"], labels=out["labels"],
                                    baselines=out["baselines"], meta=out["meta"], plots=plots)
    return out


def _run_files(files, labels, opts: Options, columns: dict, *, features=None, layers="12345", baselines=None,
              progress=None, title=None, meta=None) -> dict:
    """:func:`run` with the options and the manifest columns (:func:`load_labels` keywords) already gathered."""
    files = [str(f) for f in files]
    if not files:
        raise EvaluationError("give at least one feature file")
    for f in files:
        if not Path(f).exists():
            raise EvaluationError(f"no such feature file: {f}")
    specs = feature_specs(files, features, layers)
    loaded, item_ids, notes = _load_all(files, specs)
    lab, group_notes = _match_labels(files, labels, item_ids, columns)
    notes = notes + group_notes
    mats = {}
    for spec in specs:
        ids, X = loaded[spec.label]
        pos = {k: r for r, k in enumerate(ids.tolist())}
        mats[spec.label] = X[[pos[i] for i in lab.ids]]
    task = lab.task
    y_split = lab.y if task == "classification" else np.zeros(len(lab))
    splits = make_splits(y_split, task if task == "classification" else "regression", n_folds=opts.n_folds,
                         shuffle=opts.shuffle, seed=opts.seed, folds=lab.folds, split=lab.split, groups=lab.groups,
                         legacy=opts.protocol == "study")
    base = _baselines(specs, baselines)
    targets = lab.names if task == "regression" else [columns["label_column"] or columns["tags_column"] or ""]
    results = []
    for j, target in enumerate(targets):
        y = lab.target(j) if task == "regression" else lab.y
        results += sweep(mats, y, task, options=opts, splits=splits, ids=lab.ids, target=target, progress=progress)
    tests = compare(results, base)
    report_meta = _report_meta(files, lab.source, opts, task, base, notes, results, title)
    report_meta.update(meta or {})
    return {"results": results, "tests": tests, "labels": lab, "specs": specs, "splits": splits, "notes": notes,
            "baselines": base, "meta": report_meta}
