"""Extraction on a Dask cluster: the same file, the same features, on many machines.

The client lists the collection once (:func:`collect_items`) and splits it into
``ceil(n / items_per_task)`` shards by the stable hash of each item id
(:func:`shard_of`, the split of ``--shard I/N``).  Each shard is one Dask task
that runs the ordinary :func:`~convfeat.extraction.pipeline.extract` into its
own part file, ``OUT.h5.parts/part-IIII-of-NNNN.h5``, with the journal that
file already has; when every task is done the client merges the parts into
``OUT.h5`` (:func:`convfeat.store.merge`) and removes them.

* A worker process keeps the models it loaded (:data:`_MODELS`) for its next tasks, and
  lets its C allocator reuse freed arrays (:mod:`.allocator`: Dask's setting otherwise
  costs 17 % in page faults).
* ``bn_mode="calibrated"``: the client estimates the statistics once, on the
  seeded sample of the whole collection a single-process run draws, and sends
  them with every task, so every part holds the same ones.
* A worker that dies mid-task: Dask runs the task again, which resumes from its
  part's journal.  Bad audio is a failed item, as always (no retry); errors of
  the user (a refused file, an unseen folder) are returned, not raised, so Dask
  does not retry them; anything else is retried ``retries`` times.
* A run whose client was killed is resumed by the same call: parts that are
  finished (every item ``ok`` in every set, read from the part itself) are not
  submitted again; parts made with another configuration are refused.
* The audio and the output folder must be on a filesystem every worker sees at
  the same path: a task checks that first and fails with a clear message.

``distributed`` is an optional dependency (``pip install "convfeat[dask]"``).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from ..audio import Policy
from ..constants import CLUSTER_CONNECT_TIMEOUT, ITEMS_PER_TASK
from ..errors import ConvfeatError
from ..fileio import canonical_json, one_line, write_text_atomic
from ..store.file import StoreError, WriteLock, check_target, pending_batches, read_state
from ..store.merge import config_difference, merge
from .allocator import keep_freed_memory
from .batching import DEFAULT_BATCH_SIZE
from .cores import available_cores, resolve_device
from .items import ExtractError, collect_items, shard_of
from .pipeline import Summary, _calibration, _Progress, extract
from .sets import SetSpec, check_policy, check_window, set_config

__all__ = ["DASK_MISSING", "connect", "extract_on_cluster", "part_path", "plan_shards", "run_task"]

DASK_MISSING = 'extracting on a Dask cluster needs the distributed package: pip install "convfeat[dask]"'
TASK_RETRIES = 2          # reruns of a task that raised (infrastructure errors only)
LOCK_WAIT_SECONDS = 600   # a task waits this long for a part still written by a task of a killed run
PARTS_MARKER = "run.json"

_MODELS: dict = {}        # in each worker process: the models loaded so far, reused by its next tasks


# -- the plan ---------------------------------------------------------------------
def parts_dir(out: str | Path) -> Path:
    """``OUT.h5.parts``: the folder of the part files of a cluster run."""
    return Path(str(out) + ".parts")


def part_path(parts: Path, index: int, total: int) -> Path:
    """``parts/part-IIII-of-NNNN.h5`` (1-based ``index`` of ``total``)."""
    width = max(4, len(str(total)))
    return parts / f"part-{index:0{width}d}-of-{total:0{width}d}.h5"


def plan_shards(items: list[dict], items_per_task: int = ITEMS_PER_TASK) -> tuple[int, dict[int, list]]:
    """``(n, {shard: its items})``: ``n = ceil(len(items) / items_per_task)`` shards by
    :func:`shard_of` of each id (shards that draw no item are left out)."""
    n = max(1, -(-len(items) // items_per_task))
    shards: dict[int, list] = {}
    for it in items:
        shards.setdefault(shard_of(it["id"], n), []).append(it)
    return n, dict(sorted(shards.items()))


# -- the cluster ------------------------------------------------------------------
def _distributed():
    try:
        import distributed
    except ImportError:
        raise ExtractError(DASK_MISSING) from None
    return distributed


def connect(address: str, timeout: float = CLUSTER_CONNECT_TIMEOUT) -> tuple:
    """``address`` → ``(client, [what to close, in order], {"kind", "address"})``.

    address: ``tcp://host:port`` (any ``scheme://``: a running scheduler; its
        workers are left running), ``local`` / ``local:N`` (a ``LocalCluster`` of
        ``N`` worker processes of one thread each; default: one per core this process may
        use), or an
        entry point ``module:function`` / ``path/file.py:function`` whose function,
        called without arguments, returns a Dask cluster or ``Client``.
    timeout: seconds to reach a scheduler before an :class:`ExtractError`.
    """
    distributed = _distributed()
    address = str(address).strip()
    if address == "local" or address.startswith("local:"):
        count = address.partition(":")[2] or str(available_cores())
        if not count.isdigit() or int(count) < 1:
            raise ExtractError(f"--cluster local:N needs a number of workers N >= 1, got {address!r}")
        try:
            cluster = distributed.LocalCluster(n_workers=int(count), threads_per_worker=1, processes=True,
                                               dashboard_address=None)
        except RuntimeError as exc:        # e.g. a script that starts it outside `if __name__ == "__main__":`
            raise ExtractError(f"could not start a local Dask cluster ({one_line(str(exc))}); from a Python "
                               "script, call it under `if __name__ == \"__main__\":` (its workers are new "
                               "processes that import the script)") from None
        client = distributed.Client(cluster)
        return client, [client, cluster], {"kind": "local", "address": f"local:{int(count)}"}
    if "://" in address:
        try:
            client = distributed.Client(address, timeout=timeout)
        except Exception as exc:   # refused, timed out, or something else answering: the address is wrong
            raise ExtractError(f"cannot reach a Dask scheduler at {address} within {timeout:g} s "
                               f"({type(exc).__name__}: {one_line(str(exc))[:160]}); check the address, or "
                               "start one with `dask scheduler`") from None
        return client, [client], {"kind": "scheduler", "address": address}
    target, sep, func = address.rpartition(":")
    if not (sep and target and func.isidentifier()):
        raise ExtractError(f"--cluster {address!r}: give tcp://HOST:PORT (a scheduler), local or local:N, "
                           "or an entry point module:function or path/file.py:function")
    made = _entry_point(target, func)()
    if isinstance(made, distributed.Client):
        return made, [made], {"kind": "entry point", "address": address}
    if hasattr(made, "scheduler_address"):
        client = distributed.Client(made, timeout=timeout)
        return client, [client, made], {"kind": "entry point", "address": address}
    raise ExtractError(f"--cluster {address}: the function returned a {type(made).__name__}, "
                       "not a Dask cluster or Client")


def _entry_point(target: str, func: str):
    """The function ``func`` of module ``target`` (a dotted name or a ``.py`` file)."""
    if target.endswith(".py") or "/" in target or os.sep in target:
        path = Path(target)
        if not path.is_file():
            raise ExtractError(f"--cluster {target}:{func}: no such file {target}")
        spec = importlib.util.spec_from_file_location(f"convfeat_cluster_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)   # the user's own cluster file, as a config file is read
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ExtractError(f"--cluster {target}:{func}: cannot import {target} ({one_line(str(exc))})") \
                from None
    fn = getattr(module, func, None)
    if not callable(fn):
        raise ExtractError(f"--cluster {target}:{func}: {target} has no function {func}")
    return fn


# -- a task (runs in a worker process) -------------------------------------------------
def run_task(task: dict) -> dict:
    """Extract one shard into its part file; runs in a Dask worker (or anywhere).

    ``task``: ``index``, ``total``, ``part`` (absolute path), ``marker`` (the parts
    folder's ``run.json``, which the client wrote), ``roots`` (the inputs, absolute),
    ``items``, ``sets``, ``policy``, ``batch_size``, ``device``, ``calibrations``,
    ``topic`` (progress events), ``command``.  Returns the counts of the run
    (``total``, ``done_before``, ``processed``, ``failed``, ``audio_seconds``) or,
    for an error of the user, ``{"error": one line, "store": bool}`` (not raised, so
    that Dask does not retry it).  Infrastructure errors are raised (Dask retries).
    """
    keep_freed_memory()
    try:
        _check_shared(task)
        part = Path(task["part"])
        _wait_for_lock(part)
        summary = extract([], part, task["sets"], task["policy"], batch_size=task["batch_size"], workers=0,
                          device=task["device"], precision=task.get("precision", "fp32"),
                          frames=task.get("frames", False),
                          shard=f"{task['index']}/{task['total']}", command=task["command"],
                          items=task["items"], calibrations=task["calibrations"], model_cache=_MODELS,
                          on_progress=_reporter(task.get("topic"), task["index"]))
    except ConvfeatError as exc:
        return {"index": task["index"], "error": one_line(str(exc)), "store": isinstance(exc, StoreError)}
    return {"index": task["index"], "total": summary.total, "done_before": summary.done_before,
            "processed": summary.processed, "failed": summary.failed, "audio_seconds": summary.audio_seconds}


def _check_shared(task: dict) -> None:
    """Raise :class:`ExtractError` when this machine does not see the parts folder or an input."""
    host = socket.gethostname()
    where = ("must be on a filesystem that the client and every Dask worker see at the same path "
             "(NFS, Lustre, …)")
    if not Path(task["marker"]).is_file():
        raise ExtractError(f"the Dask worker on {host} cannot see {Path(task['marker']).parent}: the output "
                           f"folder {where}")
    for root in task["roots"]:
        if not os.path.exists(root):
            raise ExtractError(f"the Dask worker on {host} cannot see the input {root}: the audio {where}")


def _wait_for_lock(part: Path, seconds: float = LOCK_WAIT_SECONDS) -> None:
    """Wait while another process writes ``part`` (a task of a killed client's run that
    the cluster still runs); then the task finds its work done and has nothing to do."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            WriteLock(part).acquire().release()
            return
        except StoreError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def _reporter(topic: str | None, index: int):
    """A callback sending each batch of finished items of task ``index`` to the client as a Dask event."""
    if not topic:
        return None
    try:
        from distributed import get_worker
        worker = get_worker()
    except (ImportError, ValueError):     # not in a Dask worker
        return None

    def report(finished: list) -> None:
        audio = sum(float(u["duration"]) for u in finished if u["status"] == "ok" and u["duration"] == u["duration"])
        worker.log_event(topic, {"index": index, "items": len(finished), "audio": audio})
    return report


class _Tally:
    """The client's progress bar, fed by the tasks' events (:func:`_reporter`, in the
    client's event-loop thread) and squared with each task's counts when it ends."""

    def __init__(self, bar: _Progress):
        self.bar = bar
        self.lock = threading.Lock()
        self.seen: dict = {}      # task index -> [items, audio seconds] reported so far
        self.ended: set = set()

    def event(self, event: tuple) -> None:
        msg = event[1]
        with self.lock:
            if msg["index"] in self.ended:
                return
            seen = self.seen.setdefault(msg["index"], [0, 0.0])
            seen[0] += msg["items"]
            seen[1] += msg["audio"]
            self.bar.add(msg["items"], msg["audio"])

    def ended_task(self, index: int, items: int, audio: float) -> None:
        with self.lock:
            self.ended.add(index)
            seen = self.seen.get(index, [0, 0.0])
            self.bar.add(max(0, items - seen[0]), max(0.0, audio - seen[1]))


# -- the client -----------------------------------------------------------------------
def extract_on_cluster(inputs: list, out: str | Path, sets: list[SetSpec] | None = None,
                       policy: Policy | None = None, cluster: str = "local", *,
                       items_per_task: int = ITEMS_PER_TASK, batch_size: int | None = None, device: str = "auto",
                       precision: str = "fp32", frames: bool = False,
                       calibration_size: int = 256, calibration_seed: int = 0, keep_parts: bool = False,
                       retries: int = TASK_RETRIES, connect_timeout: float = CLUSTER_CONNECT_TIMEOUT,
                       progress: bool = False, command: str = "", log=None) -> Summary:
    """:func:`~convfeat.extraction.pipeline.extract` on a Dask cluster: same file, same features.

    inputs, sets, policy, batch_size (windows per inference batch in each task; default 8), device
        (resolved by each worker), precision, frames, calibration_size, calibration_seed: as for ``extract``.
        A ``bn_mode="batch"`` set is refused: its features depend on the batches of the whole
        collection, which a task per shard cannot reproduce.
    cluster: where to run (see :func:`connect`): ``tcp://host:port``, ``local[:N]`` or
        ``module:function`` / ``file.py:function``.
    items_per_task: items per task (a few hundred): ``ceil(n / items_per_task)`` part files.
    keep_parts: keep ``OUT.h5.parts/`` after the merge.
    retries: reruns of a task that raised (a worker that dies is handled by Dask itself).

    ``out`` must not exist (the parts are merged into a new file) unless it already
    holds every item with these sets: then there is nothing to do.  Re-running the
    same call after an interruption resumes from the parts.  Returns a
    :class:`~convfeat.extraction.pipeline.Summary` (``done_before`` counts items
    finished by an earlier run).
    """
    t0 = time.perf_counter()
    sets = sets or [SetSpec("choi2017")]
    policy = policy or Policy()
    check_policy(policy)
    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    batch_sets = [s.resolved_name() for s in sets if s.bn_mode == "batch"]
    if batch_sets:
        raise ExtractError(f"bn_mode batch sets ({', '.join(batch_sets)}) cannot be extracted with --cluster: "
                           "their features depend on the batches of the whole collection; extract them without "
                           "--cluster")
    if items_per_task < 1 or batch_size < 1 or retries < 0:
        raise ExtractError("--items-per-task and --batch-size must be >= 1 (and retries >= 0)")
    log = log or (lambda msg: None)
    out_abs = Path(out).resolve()
    parts = parts_dir(out_abs)
    check_target(out_abs)                         # a file that is not ours is refused before anything runs
    client, closers, where = connect(cluster, connect_timeout)   # first: a wrong address fails within seconds
    try:
        names = [s.resolved_name() for s in sets]
        if len(set(names)) != len(names):
            raise ExtractError(f"two feature sets would share a name: {names}; add name=… to one of them")
        all_items = collect_items(inputs)
        calibrations, configs = _prepare_sets(sets, names, all_items, policy, device, parts,
                                              calibration_size, calibration_seed, log, precision, frames)
        if check_target(out_abs):
            if _holds_everything(out_abs, [it["id"] for it in all_items], configs):
                log(f"nothing to do: {out} holds every item with {', '.join(names)}")
                if not keep_parts and parts.is_dir():      # left by a run killed right after its merge
                    _remove_parts(parts)
                return Summary(Path(out), len(all_items), len(all_items), 0, [], time.perf_counter() - t0, 0.0,
                               names)
            raise ExtractError(f"{out} exists already: a --cluster run merges its parts into a new file; "
                               "write to another path, or complete that file without --cluster")
        n, shards = plan_shards(all_items, items_per_task)
        common = {"total": n, "marker": str(parts / PARTS_MARKER), "roots": [str(Path(p).resolve()) for p in inputs],
                  "sets": sets, "policy": policy, "batch_size": batch_size, "device": device, "precision": precision,
                  "frames": frames,
                  "calibrations": calibrations, "command": command}      # what every task is told
        with WriteLock(parts / "client", advice="wait for that cluster run to end"):
            result = _run(client, where, common, shards, parts, out_abs, configs, retries, progress, log)
        if not keep_parts:
            _remove_parts(parts)
    finally:
        for thing in closers:
            thing.close()
    done_before, processed, failed, audio, n_parts = result
    return Summary(Path(out), len(all_items), done_before, processed, failed, time.perf_counter() - t0, audio,
                   names, n_parts)


def _prepare_sets(sets, names, all_items, policy, device, parts, size, seed, log,
                  precision: str = "fp32", frames: bool = False) -> tuple[dict, dict]:
    """``({name: Calibration}, {name: config})``: each set's configuration as a part must
    hold it, and the calibration of calibrated sets, estimated here once (or restored from
    an earlier part), exactly as a single-process run on the whole collection does."""
    from ..models import load_model

    device = resolve_device(device)
    earlier = {}
    for part in sorted(parts.glob("part-*-of-*.h5")) if parts.is_dir() else ():
        try:
            for name, fs in read_state(part)[2].items():
                earlier.setdefault(name, fs)
        except (OSError, StoreError):
            continue                               # a task refuses it with the reason
    calibrations, configs = {}, {}
    for spec, name in zip(sets, names):
        model = None if spec.model == "mfcc" else load_model(spec.model, weights=spec.weights, bn_mode=spec.bn_mode,
                                                             seed=spec.seed, device=device)
        check_window(name, model, policy)
        calibration = None
        if model is not None and model.bn_mode == "calibrated":
            calibration = _calibration(earlier.get(name), name, model, all_items, policy, size, seed, log)
            calibrations[name] = calibration
        configs[name] = set_config(spec, model, policy, calibration, precision, frames=frames)[0]
    return calibrations, configs


def _holds_everything(path: Path, ids: list, configs: dict) -> bool:
    """Whether feature file ``path`` holds every item of ``ids`` ``ok`` in every set of
    ``configs``, made with that configuration (else raise :class:`StoreError`)."""
    if not path.exists() or pending_batches(path):
        return False
    _, items, sets = read_state(path)
    for name, config in configs.items():
        if name in sets and config_difference(sets[name].config, config):
            raise StoreError(f"feature set {name!r} was made with another configuration in {path.parent.name}/"
                             f"{path.name} than in this run (differs in: "
                             f"{', '.join(config_difference(sets[name].config, config))}); "
                             f"write to another file, or delete {path} to start over")
    index = items.index()
    if any(i not in index for i in ids) or any(name not in sets for name in configs):
        return False
    rows = [index[i] for i in ids]
    return all(items.columns["status"][r] == "ok" and all(sets[n].done[r] for n in configs) for r in rows)


def _run(client, where: dict, common: dict, shards: dict, parts: Path, out: Path, configs: dict, retries: int,
         progress: bool, log) -> tuple:
    """Submit the unfinished ``shards`` (the tasks: ``common`` plus their own fields), follow
    them, merge the parts into ``out``: ``(done_before, processed, failed, audio seconds, parts)``."""
    from distributed import as_completed

    n = common["total"]
    splits = {int(p.name[:-3].rpartition("-of-")[2]) for p in parts.glob("part-*-of-*.h5")} - {n}
    if splits:
        raise ExtractError(f"{parts} holds parts of a run split into {min(splits)} shards; this one makes "
                           f"{n} (another --items-per-task or another collection): finish that run with its "
                           f"options, or delete {parts}")
    write_text_atomic(parts / PARTS_MARKER, canonical_json({"out": out.name, "tasks": n}) + "\n")
    finished = {i for i, its in shards.items()
                if _holds_everything(part_path(parts, i, n), [it["id"] for it in its], configs)}
    todo = [i for i in shards if i not in finished]
    workers = len(client.scheduler_info().get("workers", {}))
    done_before = sum(len(shards[i]) for i in finished)
    log(f"{sum(map(len, shards.values()))} items in {len(shards)} tasks ({len(finished)} finished before) on "
        f"{where['kind']} {where['address']} ({workers} workers now) -> {parts}/ -> {out} [{', '.join(configs)}]")
    if not workers:
        log("the scheduler has no workers yet: the tasks wait for them")
    topic = f"convfeat-progress-{uuid.uuid4().hex}"
    bar = _Progress(sum(len(shards[i]) for i in todo), enabled=progress)
    tally = _Tally(bar)
    client.subscribe_topic(topic, tally.event)
    futures = {}
    # Largest shards first (hash shards differ in size): the run then ends on small tasks,
    # so fewer workers sit idle while the last one finishes.
    for i in sorted(todo, key=lambda i: (-len(shards[i]), i)):
        task = dict(common, index=i, part=str(part_path(parts, i, n)), items=shards[i], topic=topic)
        futures[client.submit(run_task, task, key=f"convfeat-{topic[-8:]}-part-{i}-of-{n}", retries=retries,
                              pure=False, priority=len(shards[i]))] = i
    processed, failed, audio = 0, [], 0.0
    try:
        for future in as_completed(list(futures)):
            try:
                res = future.result()
            except Exception as exc:        # the task raised retries + 1 times, or its workers kept dying
                raise ConvfeatError(f"the task of {part_path(parts, futures[future], n).name} failed: "
                                    f"{type(exc).__name__}: {one_line(str(exc))[:300]}; the finished parts are kept "
                                    "in the parts folder: run the same command again to resume") from None
            if "error" in res:
                raise (StoreError if res["store"] else ExtractError)(res["error"])
            done_before += res["done_before"]
            processed += res["processed"]
            failed += [tuple(f) for f in res["failed"]]
            audio += res["audio_seconds"]
            tally.ended_task(res["index"], res["processed"], res["audio_seconds"])
    finally:
        bar.close()
        client.unsubscribe_topic(topic)
        client.cancel([f for f in futures if not f.done()])
    part_files = [part_path(parts, i, n) for i in shards]
    info = {"kind": where["kind"], "address": where["address"], "tasks": len(shards), "split": n,
            "workers_at_start": workers}
    merge(out, part_files, attrs={"command": common["command"], "cluster": info})
    return done_before, processed, sorted(failed), audio, len(part_files)


def _remove_parts(parts: Path) -> None:
    """Remove the part files and the marker of a merged run, then the folder when nothing else is in it."""
    for p in list(parts.glob("part-*-of-*.h5")) + [parts / PARTS_MARKER]:
        p.unlink(missing_ok=True)
    try:
        parts.rmdir()
    except OSError:
        pass
