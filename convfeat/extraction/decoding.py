"""The decode stream of an extraction: items decoded (and their MFCCs computed) in this process
or in worker processes, handed to inference in input order with bounded memory, a worker
process that dies failing only the item it was decoding."""
from __future__ import annotations

import os
from collections import deque

import numpy as np

from .handoff import SignalSlots, SlotRef, decode_into
from .worker import decode_item, watch_parent


# -- decoding ---------------------------------------------------------------------
DECODE_AHEAD_BYTES = 256 << 20   # decoded audio held ahead of inference beyond which no job is handed out
SHARED_MEMORY = True   # signals come back through shared slots (.handoff); False: pickled (bench/extract.py --handoff)


def decode_ahead(workers: int) -> int:
    """How many items may be decoded (or being decoded) and not yet taken by inference:
    enough to keep ``workers`` processes busy while a batch runs, and no more."""
    return 2 * workers + 2


def _nbytes(decoded: dict) -> int:   # arrays, and signals waiting in a shared slot
    return sum(v.nbytes for v in decoded.values() if isinstance(v, (np.ndarray, SlotRef)))


def _crashed(job: tuple, exc: BaseException) -> dict:
    item = job[0]
    return {"id": item["id"], "path": item["path"], "status": "failed", "reason":
            f"{item['path']}: the decoding process died on it, twice (a crash inside a decoder, or the "
            f"system ran out of memory; {type(exc).__name__})",
            "duration": float("nan"), "source_sr": 0, "channels": 0, "windows": 0, "peak": float("nan")}


def start_decoders(workers: int):
    """A pool of ``workers`` decode processes, started now, or None for ``workers <= 0``.

    Each process takes ~0.1 s of CPU to start (interpreter, numpy, soundfile, soxr);
    started before the caller loads its models and opens its file, that overlaps
    them instead of delaying the first batch.  Hand it to :func:`decoded_stream`,
    which shuts it down; a caller that fails before then shuts it down itself.
    """
    if workers <= 0:
        return None
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ctx = mp.get_context("spawn")  # no fork of a process holding torch threads
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=watch_parent, initargs=(os.getpid(),))
    for _ in range(workers):   # the pool starts a process per waiting job (up to its size)
        pool.submit(os.getpid)
    return pool


def decoded_stream(jobs: list, workers: int, ahead: int | None = None,
                    ahead_bytes: int = DECODE_AHEAD_BYTES, pool=None):
    """Decoded items in input order: in this process (``workers == 0``) or in
    ``workers`` processes, which then overlap decoding with inference.

    ``pool``: the processes of :func:`start_decoders` to begin with (else started here).
    Memory is bounded whatever the number of items: at most ``ahead`` (default
    :func:`decode_ahead`) items are handed to the workers and not yet taken from
    this generator, and none more while the finished ones waiting here hold
    ``ahead_bytes`` of audio.  A worker process that dies (a decoder crashing
    in C) fails the item it was decoding, found by decoding each item then in
    flight again on its own; the run goes on with a fresh set of workers.  Signals come back
    through shared memory where the platform allows (:mod:`.handoff`).
    """
    if workers <= 0:
        for job in jobs:
            yield decode_item(job)
        return
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    ahead = max(1, ahead or decode_ahead(workers))
    todo = iter(jobs)
    pending: deque = deque()   # [job, future, run alone, slot ticket], in input order
    suspects: deque = deque()  # jobs in flight when a worker died: decoded again one at a time
    fn = decode_item           # (looked up per run, so a patched module attribute is used)
    try:
        slots = SignalSlots(ahead) if SHARED_MEMORY else None
    except OSError:            # no shared memory here: signals come back pickled
        slots = None

    def submit(job, alone: bool = False) -> list:   # → a pending entry
        ticket = slots.take() if slots else None
        try:
            future = pool.submit(decode_into, fn, job, ticket)
        except BrokenProcessPool as exc:   # a worker died since the last result: handled below
            future = Future()
            future.set_exception(exc)
        return [job, future, alone, ticket]

    pool = pool if pool is not None else start_decoders(workers)
    finished = exhausted = False
    try:
        while True:
            if suspects:
                if not pending:
                    pending.append(submit(suspects.popleft(), alone=True))
            else:
                while len(pending) < ahead and sum(_nbytes(f.result()) for _, f, _, _ in pending
                                                   if f.done() and not f.exception()) < ahead_bytes:
                    job = next(todo, None)
                    if job is None:
                        exhausted = True
                        break
                    pending.append(submit(job))
            if not pending:
                break
            job, future, alone, ticket = pending[0]
            try:
                decoded = future.result()
            except BrokenProcessPool as exc:
                pool.shutdown(wait=True, cancel_futures=True)
                pool = start_decoders(workers)
                lost = [p[0] for p in pending]
                for p in pending if slots else ():   # their workers are gone: the slots are free
                    slots.release(p[3])
                pending.clear()
                if alone:           # it killed its worker on its own: that item fails
                    yield _crashed(job, exc)
                    lost = lost[1:]
                suspects.extendleft(reversed(lost))
                continue
            pending.popleft()
            if slots:
                decoded = slots.collect(decoded, ticket)
            if exhausted and not pending and not suspects:
                pool.shutdown(wait=False)   # nothing left to decode: the processes exit while this item is used
            yield decoded
        finished = True
    finally:
        if not finished:   # stopped early (--strict, an error): do not wait for a long decode to end
            for process in (getattr(pool, "_processes", None) or {}).values():
                process.terminate()
        pool.shutdown(wait=finished, cancel_futures=True)
        if slots:
            slots.close()   # a worker still writing has its own mapping: the memory goes with the last
