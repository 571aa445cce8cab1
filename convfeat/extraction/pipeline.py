"""The extraction pipeline: a collection of audio → one HDF5 feature file.

Decoding (and MFCC) runs in worker processes (:mod:`.decoding`); convnet inference is batched
across files in the main process; results are journaled batch by batch and the
file is rewritten atomically at checkpoints (see :mod:`convfeat.store`).
Features do not depend on worker count, batch size or file order (except in
``bn_mode="batch"``, whose very definition depends on the batch).
"""
from __future__ import annotations

import contextlib
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import Policy
from ..constants import LAYER_NAMES, UNITS_PER_LAYER
from ..errors import InputError
from ..models.calibration import Calibration, calibration_indices
from ..store import FeatureFile
from .batching import plan_batches
from .cores import available_cores, plan_cores, resolve_device, torch_threads
from .decoding import decoded_stream, start_decoders
from .items import ExtractError, collect_items, parse_shard, shard_of
from .sets import SetSpec, check_policy, check_window, set_config
from .worker import decode_item, not_finite_reason, windows_of


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
    merged_parts: int = 0      # part files merged into ``path`` (a cluster run; 0 for ``extract``)


def extract(inputs: list, out: str | Path, sets: list[SetSpec] | None = None, policy: Policy | None = None,
            batch_size: int | None = None, workers: int | str = 1, device="auto", shard: str | None = None,
            strict: bool = False, calibration_size: int = 256, calibration_seed: int = 0,
            progress: bool = False, command: str = "", log=None, precision: str = "fp32",
            batch_order: str | None = None, batch_seed: int | None = None, frames: bool = False, *,
            items: list | None = None, calibrations: dict | None = None, model_cache: dict | None = None,
            on_progress=None) -> Summary:
    """Extract feature ``sets`` of every audio item in ``inputs`` into the HDF5 file ``out``.

    inputs: folders (recursive), audio files, ``.txt`` lists or manifest CSVs
        (``path`` column + metadata columns).
    sets: feature sets (default: choi2017); see :func:`parse_set`.
    policy: length policy (``short`` repeat|pad, ``long`` first|mean, ``hop_seconds``,
        ``window_seconds``: 29 s unless told; a model whose pooling cannot take
        the window is refused with an :class:`ExtractError` before anything is written).
    batch_size: windows per inference batch (default 8; 256, the study's, when a set has
        ``bn_mode="batch"``); workers: decoding processes, or ``"auto"``:
        workers and torch threads from :func:`~convfeat.extraction.cores.plan_cores`
        (torch's thread count is set for the run and restored after).
    device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or a ``torch.device``;
        every device takes the same path (model ``.to(device)``, batches ``.to(device,
        non_blocking=True)``, features back to the CPU as float32).
    precision: ``"fp32"`` (default) or ``"bf16"`` (autocast; see
        :mod:`convfeat.models.precision`; recorded in the set's config).
    batch_order, batch_seed: the order items enter the batches when a set has ``bn_mode="batch"``
        (default ``"shuffled"`` with seed 0, as the study; ``"sorted"``: by id); recorded in that set's
        config (:mod:`.batching`).  Other sets' features depend on neither.
    shard: ``"I/N"`` keeps the items whose stable id hash falls in shard I.
    strict: stop at the first failed item (everything finished so far is kept).
    calibration_size, calibration_seed: the sample of ``bn_mode="calibrated"`` sets.
    frames: also store each convnet set's frame-level features (:mod:`convfeat.frames`: of
        the first 29-s window with ``long="first"``, of the whole signal with ``"mean"``) as
        a ragged per-item array (:mod:`convfeat.store.frames`; ``convfeat.load_frames``).

    Hooks of :func:`convfeat.extraction.cluster.extract_on_cluster` (one call per shard):
    items: the collection, already collected (``inputs`` is then not read);
    calibrations: ``{set name: Calibration}`` to use instead of estimating one;
    model_cache: a dict that keeps loaded models between calls (keyed by set and device);
    on_progress: called with each list of finished item updates (dicts with ``status``, ``duration``).

    Re-running the same call skips finished items; items that failed are tried
    again.  Returns a :class:`Summary`.
    """
    from ..models import load_model
    from ..models.precision import check_precision

    t0 = time.perf_counter()
    sets = sets or [SetSpec("choi2017")]
    policy = policy or Policy()
    check_policy(policy)
    if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise ExtractError(f"--workers must be 'auto' or >= 0 (got {workers!r})")
    try:
        check_precision(precision)
    except InputError as exc:
        raise ExtractError(str(exc)) from None
    names = [s.resolved_name() for s in sets]
    if len(set(names)) != len(names):
        raise ExtractError(f"two feature sets would share a name: {names}; add name=… to one of them")
    batching = plan_batches(any(s.bn_mode == "batch" for s in sets), batch_size, batch_order, batch_seed)
    batch_size = batching.size
    device = resolve_device(device)
    all_items = items if items is not None else collect_items(inputs)
    shard_tuple = parse_shard(shard)
    items = [it for it in all_items if shard_tuple is None or shard_of(it["id"], shard_tuple[1]) == shard_tuple[0]]
    log = log or (lambda msg: None)
    threads = None
    if workers == "auto":
        workers, threads = plan_cores(available_cores(), device, sets, len(items))
    decoders = start_decoders(workers)     # they start while the models load and the file opens
    with contextlib.ExitStack() as cleanup:
        if decoders is not None:           # decoded_stream shuts them down; this, a run that fails before it
            cleanup.callback(decoders.shutdown, wait=False, cancel_futures=True)
        models = {}
        for spec, name in zip(sets, names):
            if spec.model != "mfcc":
                key = (spec.model, spec.weights, spec.bn_mode, spec.seed, device)
                cached = model_cache.get(key) if model_cache is not None else None
                models[name] = cached if cached is not None else load_model(
                    spec.model, weights=spec.weights, bn_mode=spec.bn_mode, seed=spec.seed, device=device)
                if model_cache is not None:
                    model_cache[key] = models[name]
            check_window(name, models.get(name), policy)

        out = Path(out)
        cleanup.enter_context(torch_threads(threads))
        ff = cleanup.enter_context(FeatureFile(out))
        ff.add_items([{"id": it["id"], "path": it["path"], "meta": it["meta"]} for it in items])
        feature_sets = {}
        for spec, name in zip(sets, names):
            model = models.get(name)
            calibration = None
            if model is not None and (calibrations or {}).get(name) is not None:
                calibration = calibrations[name]
                calibration.apply(model)
            elif model is not None and model.bn_mode == "calibrated":
                calibration = _calibration(ff.sets.get(name), name, model, all_items, policy, calibration_size,
                                           calibration_seed, log)
            config, provenance, widths = set_config(spec, model, policy, calibration, precision,
                                                    batching.record() if model is not None and model.bn_mode == "batch"
                                                    else None, frames)
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
        todo = batching.arrange(todo, all_items)
        log(f"{len(items)} items ({done_before} already done), {len(todo)} to process "
            f"-> {out} [{', '.join(names)}]")
        runner = _Runner(ff, feature_sets, models, sets, names, batch_size, device, strict, policy, precision)
        want_mfcc = tuple(dict.fromkeys(s.options.get("window", "model") for s in sets if s.model == "mfcc"))
        jobs = [(it, policy, want_mfcc) for it in todo]
        bar = _Progress(len(todo), enabled=progress, callback=on_progress)
        # Once the last item is decoded the decoders' cores are free: the last batches take them all
        # (the features do not depend on the thread count: tests/test_speed_paths.py).
        tail = torch_threads(available_cores()) if threads is not None else contextlib.nullcontext()
        try:
            for k, decoded in enumerate(decoded_stream(jobs, workers, pool=decoders)):
                if k == len(jobs) - 1:
                    with tail:
                        runner.add(decoded)
                        runner.flush()
                else:
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
    failed = list(runner.failed.items())
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
    from ..api import front_end_overflows

    windows, used, unusable = [], [], []
    for i in calibration_indices(len(all_items), size, seed):
        dec = decode_item((all_items[i], policy, False))
        if dec["status"] != "ok":
            continue
        window = np.array(windows_of(dec, policy)[0])
        # a clip whose spectrogram overflows would make every statistic NaN
        if not front_end_overflows(model, window[None], [dec["peak"]])[0]:
            windows.append(window)
            used.append(all_items[i]["id"])
        else:
            unusable.append(all_items[i]["id"])
    if not windows:
        raise ExtractError("no decodable item in the calibration sample")
    log(f"calibrating {name} on {len(windows)} clips (seed {seed})"
        + (f"; left out {len(unusable)} whose spectrogram overflows: {', '.join(unusable[:3])}"
           if unusable else ""))
    calibration = Calibration.estimate(model, np.stack(windows), used, size, seed)
    if not all(np.isfinite(v).all() for layer in calibration.stats.values() for v in layer.values()):
        raise ExtractError(f"the calibration statistics of {name} are not finite; check the sampled items "
                           f"({', '.join(used[:5])}{', …' if len(used) > 5 else ''})")
    return calibration


class _Runner:
    """Batches windows across items, runs every model, averages per item, checks, records.

    An item's windows stream through the models in batches of ``batch_size``
    (with the windows of other items), and only their pooled sums are kept, so
    memory does not grow with the number of windows of an item.  An item is
    recorded ``ok`` only when every feature is finite; the store's refusals
    (:meth:`FeatureFile.record`'s return value) count as failures too.
    """

    def __init__(self, ff, feature_sets, models, specs, names, batch_size, device, strict, policy,
                 precision="fp32"):
        self.ff, self.feature_sets, self.models = ff, feature_sets, models
        self.names, self.specs = names, specs
        self.batch_size, self.device, self.strict = batch_size, device, strict
        self.policy, self.precision = policy, precision
        self.queue: deque = deque()  # [decoded item, its windows, next window index]
        self.queued_windows = 0
        self.pending: dict = {}    # id -> {"item", "sums": {set: {layer: sum}}, "left"}
        self.finished: list = []
        self.failed: dict = {}     # id -> reason, in the order the failures happened
        self.n_processed = 0
        self.audio_seconds = 0.0
        self.stop = False
        self._since_checkpoint = time.perf_counter()

    def add(self, decoded: dict) -> None:
        if decoded["status"] != "ok":
            self._finish(decoded, {})
            return
        if not self.models:  # MFCC only (checked finite by the worker)
            self._finish(decoded, self._mfcc_feats(decoded))
            return
        windows = windows_of(decoded, self.policy)   # long="mean": a strided view, no copy
        self.pending[decoded["id"]] = {"item": decoded, "sums": {}, "left": len(windows)}
        self.queue.append([decoded, windows, 0])
        self.queued_windows += len(windows)
        while self.queued_windows >= self.batch_size and not self.stop:
            self._run_batch()

    def flush(self) -> None:
        while self.queue and not self.stop:
            self._run_batch()

    def _forward(self, model, batch, peaks: list) -> tuple[dict, np.ndarray]:
        """``model`` on ``batch`` → ({layer: (rows, 32) float32}, (rows,) bool overflowed).

        Rows whose spectrogram overflows float32 (:func:`convfeat.api.front_end_overflows`,
        run only on rows whose item ``peaks`` is beyond any normal audio) are left out of
        the batch, their outputs NaN: whatever the network makes of them is no feature,
        and in bn_mode batch they would spoil the statistics of the other rows."""
        import torch

        from ..api import front_end_overflows
        from ..models.precision import autocast

        overflow = front_end_overflows(model, batch, peaks)
        with torch.no_grad(), autocast(batch.device, self.precision):
            if not overflow.any():
                res = model(batch)
                return {k: res[k].float().cpu().numpy() for k in LAYER_NAMES}, overflow
            out = {k: np.full((batch.shape[0], UNITS_PER_LAYER), np.nan, np.float32) for k in LAYER_NAMES}
            keep = ~overflow
            if keep.any():
                res = model(batch[torch.from_numpy(keep).to(batch.device)])
                for k in LAYER_NAMES:
                    out[k][keep] = res[k].float().cpu().numpy()
            return out, overflow

    def _run_batch(self) -> None:
        import torch

        rows, owners = [], []
        while self.queue and len(owners) < self.batch_size:
            dec, windows, k = self.queue[0]
            take = min(self.batch_size - len(owners), len(windows) - k)
            rows.append(windows[k:k + take])
            owners += [dec["id"]] * take
            if k + take == len(windows):
                self.queue.popleft()
            else:
                self.queue[0][2] = k + take
        self.queued_windows -= len(owners)
        # the only copy: one batch (to an accelerator without waiting; results come back synchronously)
        batch = torch.from_numpy(np.concatenate(rows)).to(self.device, non_blocking=True)
        del rows
        peaks = [self.pending[i]["item"].get("peak", 0.0) for i in owners]
        outputs, overflows = {}, {}
        for name, model in self.models.items():
            outputs[name], overflows[name] = self._forward(model, batch, peaks)
        for row, item_id in enumerate(owners):
            p = self.pending[item_id]
            for name, layers in outputs.items():
                if overflows[name][row]:
                    p.setdefault("overflow", set()).add(name)
                acc = p["sums"].setdefault(name, {k: np.zeros(UNITS_PER_LAYER, np.float64) for k in LAYER_NAMES})
                for k in LAYER_NAMES:
                    acc[k] += layers[k][row]
            p["left"] -= 1
            if p["left"] == 0:
                del self.pending[item_id]
                self._complete(p)

    def _frames(self, dec: dict, bad: list) -> dict:
        """Frame features of the item for the sets stored with frames (appending to ``bad``)."""
        from ..errors import ConvfeatError
        from ..frames import frames_of_signal

        out = {}
        signal = dec["signal"][:self.policy.window_samples] if self.policy.long == "first" else dec["signal"]
        for name, fs in self.ff.sets.items():
            if name in self.models and fs.frames is not None:
                try:
                    out[name] = frames_of_signal(self.models[name], signal, "12345", self.policy.short)[1]
                except ConvfeatError as exc:
                    bad.append(f"{name}: {exc}")
        return out

    def _complete(self, p: dict) -> None:
        """All windows of an item are through the models: its mean features, checked finite."""
        dec = p["item"]
        with np.errstate(over="ignore", invalid="ignore"):
            feats = {name: {k: (v / dec["windows"]).astype(np.float32) for k, v in sums.items()}
                     for name, sums in p["sums"].items()}
        feats.update(self._mfcc_feats(dec))
        bad = []
        for name, arrays in feats.items():
            layers = [k for k, v in arrays.items() if not np.isfinite(v).all()]
            if name in p.get("overflow", ()):
                bad.append(f"{name}: its spectrogram overflows float32")
            elif layers:
                shown = f"{layers[0]}…{layers[-1]}" if layers == list(LAYER_NAMES) else ", ".join(layers)
                bad.append(f"{name} {shown}")
        frames = {} if bad else self._frames(dec, bad)
        if bad:
            dec = dict(dec, status="failed", reason=not_finite_reason(dec.get("path", dec["id"]), "; ".join(bad),
                                                                      dec.get("peak", float("nan"))))
            feats, frames = {}, {}
        self._finish(dec, feats, frames)

    def _mfcc_feats(self, dec: dict) -> dict:
        """{set name: {"mfcc": (120,)}} of the MFCC sets, each from the decoded item's MFCC of its window kind."""
        keys = {n: "mfcc" if s.options.get("window", "model") == "model" else f"mfcc_{s.options['window']}"
                for n, s in zip(self.names, self.specs) if s.model == "mfcc"}
        return {n: {"mfcc": dec[k]} for n, k in keys.items() if k in dec}

    def _finish(self, dec: dict, feats: dict, frames: dict | None = None) -> None:
        update = {k: dec[k] for k in ("id", "status", "reason", "duration", "source_sr", "channels", "windows")}
        update["features"] = feats
        if frames:
            update["frames"] = frames
        self.finished.append(update)
        self.n_processed += 1
        if dec["status"] == "ok" and np.isfinite(dec["duration"]):
            self.audio_seconds += dec["duration"]
        if dec["status"] != "ok":
            self._failed(update["id"], update["reason"])

    def _failed(self, item_id: str, reason: str) -> None:
        self.failed[item_id] = reason
        if self.strict:
            self.stop = True

    def pop_finished(self) -> list:
        done, self.finished = self.finished, []
        if done:
            refused = self.ff.record(done) or []   # items whose values the file cannot hold
            for item_id, reason in refused:
                self._failed(item_id, reason)
            # Rewrite the file when that costs little next to the work done since the last rewrite.
            now = time.perf_counter()
            if now - self._since_checkpoint > max(2.0, 20 * self.ff.last_checkpoint_seconds):
                self.ff.checkpoint()
                self._since_checkpoint = time.perf_counter()
        return done


class _Progress:
    """A rich progress bar (items/s, audio hours/s, ETA); silent when not a terminal."""

    def __init__(self, total: int, enabled: bool, callback=None):
        self.enabled = enabled and total > 0
        self.callback = callback
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
        """Count ``finished`` item updates (a list of dicts); pass them to the callback."""
        if finished and self.callback is not None:
            self.callback(finished)
        if self.enabled and finished:
            self.add(len(finished), sum(u["duration"] for u in finished
                                        if u["status"] == "ok" and np.isfinite(u["duration"])))

    def add(self, items: int, audio_seconds: float) -> None:
        """Count ``items`` more finished items holding ``audio_seconds`` of audio."""
        if not self.enabled:
            return
        self.audio += audio_seconds
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        done = self.progress.tasks[0].completed + items
        self.progress.update(self.task, advance=items,
                             rate=f"{done / elapsed:.1f} items/s {self.audio / 3600 / elapsed:.3f} audio h/s")

    def close(self) -> None:
        if self.enabled:
            self.progress.stop()
