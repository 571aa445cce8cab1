"""The extraction pipeline: a collection of audio → one HDF5 feature file.

Decoding (and MFCC) runs in worker processes; convnet inference is batched
across files in the main process; results are journaled batch by batch and the
file is rewritten atomically at checkpoints (see :mod:`convfeat.store`).
Features do not depend on worker count, batch size or file order (except in
``bn_mode="batch"``, whose very definition depends on the batch).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import Policy
from ..constants import LAYER_NAMES, UNITS_PER_LAYER
from ..models.calibration import Calibration, calibration_indices
from ..store import FeatureFile
from .items import ExtractError, collect_items, parse_shard, shard_of
from .sets import SetSpec, check_policy, check_window, set_config
from .worker import decode_item


# -- decoding ---------------------------------------------------------------------
def _decoded_stream(jobs: list, workers: int):
    """Decoded items in input order: in this process (``workers == 0``) or in
    ``workers`` processes, which then overlap decoding with inference."""
    if workers <= 0:
        for job in jobs:
            yield decode_item(job)
        return
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # no fork of a process holding torch threads
    with ctx.Pool(workers) as pool:
        yield from pool.imap(decode_item, jobs, chunksize=1)


# -- the run ---------------------------------------------------------------------
@dataclass
class Summary:
    path: Path
    total: int
    done_before: int
    processed: int
    failed: list
    seconds: float
    audio_seconds: float
    feature_sets: list


def extract(inputs: list, out: str | Path, sets: list[SetSpec] | None = None, policy: Policy | None = None,
            batch_size: int = 8, workers: int = 1, device: str = "auto", shard: str | None = None,
            strict: bool = False, calibration_size: int = 256, calibration_seed: int = 0,
            progress: bool = False, command: str = "", log=None) -> Summary:
    """Extract feature ``sets`` of every audio item in ``inputs`` into the HDF5 file ``out``.

    inputs: folders (recursive), audio files, ``.txt`` lists or manifest CSVs
        (``path`` column + metadata columns).
    sets: feature sets (default: choi2017); see :func:`parse_set`.
    policy: length policy (``short`` repeat|pad, ``long`` first|mean, ``hop_seconds``,
        ``window_seconds``: 29 s unless told; a model whose pooling cannot take
        the window is refused with an :class:`ExtractError` before anything is written).
    batch_size: windows per inference batch; workers: decoding processes.
    shard: ``"I/N"`` keeps the items whose stable id hash falls in shard I.
    strict: stop at the first failed item (everything finished so far is kept).
    calibration_size, calibration_seed: the sample of ``bn_mode="calibrated"`` sets.

    Re-running the same call skips finished items; items that failed are tried
    again.  Returns a :class:`Summary`.
    """
    import torch

    from ..models import load_model

    t0 = time.perf_counter()
    sets = sets or [SetSpec("choi2017")]
    policy = policy or Policy()
    check_policy(policy)
    if batch_size < 1 or workers < 0:
        raise ExtractError("--batch-size must be >= 1 and --workers >= 0")
    names = [s.resolved_name() for s in sets]
    if len(set(names)) != len(names):
        raise ExtractError(f"two feature sets would share a name: {names}; add name=… to one of them")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    all_items = collect_items(inputs)
    shard_tuple = parse_shard(shard)
    items = [it for it in all_items if shard_tuple is None or shard_of(it["id"], shard_tuple[1]) == shard_tuple[0]]
    log = log or (lambda msg: None)

    models = {}
    for spec, name in zip(sets, names):
        if spec.model != "mfcc":
            models[name] = load_model(spec.model, weights=spec.weights, bn_mode=spec.bn_mode, seed=spec.seed,
                                      device=device)
        check_window(name, models.get(name), policy)

    out = Path(out)
    with FeatureFile(out) as ff:
        ff.add_items([{"id": it["id"], "path": it["path"], "meta": it["meta"]} for it in items])
        feature_sets = {}
        for spec, name in zip(sets, names):
            model = models.get(name)
            calibration = None
            if model is not None and model.bn_mode == "calibrated":
                calibration = _calibration(ff.sets.get(name), name, model, all_items, policy, calibration_size,
                                           calibration_seed, log)
            config, provenance, widths = set_config(spec, model, policy, calibration)
            fs = ff.ensure_set(name, widths, config, provenance)
            if calibration is not None and not fs.calibration:
                fs.calibration = calibration.to_arrays()
            feature_sets[name] = fs
        ff.attrs.update(command=command, shard=shard or "")
        index = ff.items.index()
        status = ff.items.columns["status"]
        todo = [it for it in items
                if not (status[index[it["id"]]] == "ok" and all(fs.done[index[it["id"]]] for fs in feature_sets.values()))]
        done_before = len(items) - len(todo)
        log(f"{len(items)} items ({done_before} already done), {len(todo)} to process "
            f"-> {out} [{', '.join(names)}]")
        runner = _Runner(ff, feature_sets, models, sets, names, batch_size, device, strict)
        want_mfcc = any(s.model == "mfcc" for s in sets)
        jobs = [(it, policy, want_mfcc) for it in todo]
        bar = _Progress(len(todo), enabled=progress)
        try:
            for decoded in _decoded_stream(jobs, workers):
                runner.add(decoded)
                bar.advance(runner.pop_finished())
                if runner.stop:
                    break
            runner.flush()
            bar.advance(runner.pop_finished())
        finally:
            bar.close()
            if ff.dirty:  # a run with nothing to do leaves the file byte-for-byte as it was
                ff.checkpoint()
    failed = [(u["id"], u["reason"]) for u in runner.all_failed]
    return Summary(out, len(items), done_before, runner.n_processed, failed, time.perf_counter() - t0,
                   runner.audio_seconds, names)


def _calibration(existing, name: str, model, all_items: list, policy: Policy, size: int, seed: int,
                 log) -> Calibration:
    """The frozen BN statistics of calibrated set ``name``, applied to ``model``: restored
    from the file's set ``existing`` when it has them, else estimated on a seeded sample
    of up to ``size`` items drawn from the whole collection (so every shard agrees), each
    contributing its first window."""
    if existing is not None and existing.calibration:
        calibration = Calibration.from_arrays(existing.calibration, existing.config["calibration"])
        calibration.apply(model)
        return calibration
    windows, used = [], []
    for i in calibration_indices(len(all_items), size, seed):
        dec = decode_item((all_items[i], policy, False))
        if dec["status"] == "ok":
            windows.append(dec["x"][0])
            used.append(all_items[i]["id"])
    if not windows:
        raise ExtractError("no decodable item in the calibration sample")
    log(f"calibrating {name} on {len(windows)} clips (seed {seed})")
    return Calibration.estimate(model, np.stack(windows), used, size, seed)


class _Runner:
    """Batches windows across items, runs every model, averages per item, records."""

    def __init__(self, ff, feature_sets, models, specs, names, batch_size, device, strict):
        self.ff, self.feature_sets, self.models = ff, feature_sets, models
        self.names, self.specs = names, specs
        self.batch_size, self.device, self.strict = batch_size, device, strict
        self.queue: list = []      # [decoded item, next window index]
        self.pending: dict = {}    # id -> {"item", "sums": {set: {layer: sum}}, "left"}
        self.finished: list = []
        self.all_failed: list = []
        self.n_processed = 0
        self.audio_seconds = 0.0
        self.stop = False
        self._since_checkpoint = time.perf_counter()

    def add(self, decoded: dict) -> None:
        if decoded["status"] != "ok":
            self._finish(decoded, {})
            return
        if not self.models:  # MFCC only
            self._finish(decoded, {"mfcc": {"mfcc": decoded["mfcc"]}})
            return
        self.pending[decoded["id"]] = {"item": decoded, "sums": {}, "left": decoded["windows"]}
        self.queue.append([decoded, 0])
        while sum(d["windows"] - k for d, k in self.queue) >= self.batch_size:
            self._run_batch()

    def flush(self) -> None:
        while self.queue and not self.stop:
            self._run_batch()

    def _run_batch(self) -> None:
        import torch

        rows, owners = [], []
        while self.queue and len(owners) < self.batch_size:
            dec, k = self.queue[0]
            take = min(self.batch_size - len(owners), dec["windows"] - k)
            rows.append(dec["x"][k:k + take])
            owners += [dec["id"]] * take
            if k + take == dec["windows"]:
                self.queue.pop(0)
            else:
                self.queue[0][1] = k + take
        batch = torch.from_numpy(np.concatenate(rows)).to(self.device)
        outputs = {}
        with torch.no_grad():
            for name, model in self.models.items():
                res = model(batch)
                outputs[name] = {k: res[k].float().cpu().numpy() for k in LAYER_NAMES}
        for row, item_id in enumerate(owners):
            p = self.pending[item_id]
            for name, layers in outputs.items():
                acc = p["sums"].setdefault(name, {k: np.zeros(UNITS_PER_LAYER, np.float64) for k in LAYER_NAMES})
                for k in LAYER_NAMES:
                    acc[k] += layers[k][row]
            p["left"] -= 1
            if p["left"] == 0:
                dec = p["item"]
                feats = {name: {k: (v / dec["windows"]).astype(np.float32) for k, v in sums.items()}
                         for name, sums in p["sums"].items()}
                if "mfcc" in dec:
                    feats.update({n: {"mfcc": dec["mfcc"]} for n, s in zip(self.names, self.specs)
                                  if s.model == "mfcc"})
                del self.pending[item_id]
                self._finish(dec, feats)

    def _finish(self, dec: dict, feats: dict) -> None:
        if "mfcc" in feats and "mfcc" not in self.feature_sets:
            feats = {n: {"mfcc": feats["mfcc"]["mfcc"]} for n, s in zip(self.names, self.specs) if s.model == "mfcc"}
        update = {k: dec[k] for k in ("id", "status", "reason", "duration", "source_sr", "channels", "windows")}
        update["features"] = feats
        self.finished.append(update)
        self.n_processed += 1
        if dec["status"] == "ok" and np.isfinite(dec["duration"]):
            self.audio_seconds += dec["duration"]
        if dec["status"] != "ok":
            self.all_failed.append(update)
            if self.strict:
                self.stop = True

    def pop_finished(self) -> list:
        done, self.finished = self.finished, []
        if done:
            self.ff.record(done)
            # Rewrite the file when that costs little next to the work done since the last rewrite.
            now = time.perf_counter()
            if now - self._since_checkpoint > max(2.0, 20 * self.ff.last_checkpoint_seconds):
                self.ff.checkpoint()
                self._since_checkpoint = time.perf_counter()
        return done


class _Progress:
    """A rich progress bar (items/s, audio hours/s, ETA); silent when not a terminal."""

    def __init__(self, total: int, enabled: bool):
        self.enabled = enabled and total > 0
        self.audio = 0.0
        self.t0 = time.perf_counter()
        if not self.enabled:
            return
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.progress = Progress(TextColumn("extract"), BarColumn(bar_width=24), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), transient=False)
        self.task = self.progress.add_task("extract", total=total, rate="")
        self.progress.start()

    def advance(self, finished: list) -> None:
        """Count ``finished`` item updates (a list of dicts)."""
        if not self.enabled or not finished:
            return
        self.audio += sum(u["duration"] for u in finished if u["status"] == "ok" and np.isfinite(u["duration"]))
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        done = self.progress.tasks[0].completed + len(finished)
        self.progress.update(self.task, advance=len(finished),
                             rate=f"{done / elapsed:.1f} items/s {self.audio / 3600 / elapsed:.3f} audio h/s")

    def close(self) -> None:
        if self.enabled:
            self.progress.stop()
