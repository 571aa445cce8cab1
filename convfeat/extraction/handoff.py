"""How a decode worker hands its 12-kHz signal back to the run: through shared memory.

A 29-s signal (1.4 MB) returned the plain way is pickled into the process pool's pipe and
unpickled on the other side: 1-1.4 ms of CPU per file in the run's process, the one that also
runs inference, against 0.4-0.6 ms this way (``python bench/extract.py --handoff``).  Instead
the run keeps a few slots in one anonymous shared file (Linux ``memfd``, freed by the
kernel when the run exits, however it exits: nothing to clean up, nothing left in ``/dev/shm``);
a worker opens it once through ``/proc/<run pid>/fd/<fd>``, copies the signal into the slot it
was given and returns only ``(slot, samples)``; the run copies the signal out and frees the slot.

Where that cannot work (no ``memfd`` or ``/proc``: macOS, Windows; a signal longer than a slot)
the signal travels the plain way: the same values, a little slower.
"""
from __future__ import annotations

import mmap
import os
import uuid
from dataclasses import dataclass

import numpy as np

__all__ = ["SLOT_BYTES", "SignalSlots", "SlotRef", "SlotTicket", "decode_into", "into_slot"]

SLOT_BYTES = 8 << 20   # one slot: 8 MiB = 2.9 min of 12-kHz float32 (pages never written cost nothing)


@dataclass(frozen=True)
class SlotRef:
    """What a worker returns in place of a signal it put into a slot: where, how many samples."""
    token: str
    slot: int
    samples: int

    @property
    def nbytes(self) -> int:
        return self.samples * 4


@dataclass(frozen=True)
class SlotTicket:
    """What a job carries to its worker: the shared file, its identity and the slot to fill."""
    path: str
    token: str
    slot: int
    slot_bytes: int


class SignalSlots:
    """The run's side: ``count`` slots of ``slot_bytes`` in one anonymous shared file.

    ``take()`` → a :class:`SlotTicket` for a job (None when all are taken);
    ``collect(decoded)`` replaces a :class:`SlotRef` in ``decoded["signal"]`` by a copy of the
    signal and frees its slot; ``release(ticket)`` frees the slot of a job that returned nothing
    (its worker died).  Raises OSError where the platform has no ``memfd``.
    """

    def __init__(self, count: int, slot_bytes: int = SLOT_BYTES):
        if not hasattr(os, "memfd_create") or not os.path.isdir(f"/proc/{os.getpid()}/fd"):
            raise OSError("no memfd_create or /proc on this platform")
        self.count, self.slot_bytes = int(count), int(slot_bytes)
        self._fd = os.memfd_create("convfeat-decoded", getattr(os, "MFD_CLOEXEC", 0))
        try:
            os.ftruncate(self._fd, self.count * self.slot_bytes)
            self._map = mmap.mmap(self._fd, self.count * self.slot_bytes)
        except BaseException:
            os.close(self._fd)
            raise
        self.path = f"/proc/{os.getpid()}/fd/{self._fd}"
        self.token = uuid.uuid4().hex   # a worker's cached mapping is of this file, not of a reused fd number
        self._free = list(range(self.count - 1, -1, -1))

    def take(self) -> SlotTicket | None:
        if not self._free:
            return None
        return SlotTicket(self.path, self.token, self._free.pop(), self.slot_bytes)

    def release(self, ticket: SlotTicket | None) -> None:
        if ticket is not None and ticket.token == self.token and ticket.slot not in self._free:
            self._free.append(ticket.slot)

    def collect(self, decoded: dict, ticket: SlotTicket | None) -> dict:
        """``decoded`` with its signal copied out of the slot (when a worker put it there); the
        ticket's slot is free again either way."""
        ref = decoded.get("signal")
        if isinstance(ref, SlotRef):
            if ticket is None or ref.token != self.token or ref.slot != ticket.slot:
                raise RuntimeError(f"a decoded signal came back in slot {ref.slot}, not its own")
            start = ref.slot * self.slot_bytes
            decoded["signal"] = np.frombuffer(self._map, np.float32, ref.samples, start).copy()
        self.release(ticket)
        return decoded

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            os.close(self._fd)
            self._map = None

    def __del__(self):   # a run that fails before closing it: the memory goes with the fd
        try:
            self.close()
        except Exception:
            pass


# -- the worker's side --------------------------------------------------------------------
_OPENED: dict = {}   # token → mmap of the run's shared file, opened once per worker process


def _mapping(ticket: SlotTicket):
    m = _OPENED.get(ticket.token)
    if m is None:
        with open(ticket.path, "r+b") as f:
            m = mmap.mmap(f.fileno(), 0)
        if len(m) < (ticket.slot + 1) * ticket.slot_bytes:
            m.close()
            raise OSError(f"{ticket.path} is smaller than its slots")
        for old in _OPENED.values():   # one run per worker process: an earlier file is done with
            old.close()
        _OPENED.clear()
        _OPENED[ticket.token] = m
    return m


def into_slot(decoded: dict, ticket: SlotTicket | None) -> dict:
    """``decoded`` (a worker's result) with its signal moved into the ticket's slot: ``signal``
    becomes a :class:`SlotRef`.  Unchanged when there is no ticket, no signal, a signal larger
    than the slot or not float32, or the shared file cannot be opened."""
    y = decoded.get("signal")
    if ticket is None or not isinstance(y, np.ndarray) or y.dtype != np.float32 or y.ndim != 1 \
            or y.nbytes > ticket.slot_bytes:
        return decoded
    try:
        m = _mapping(ticket)
    except OSError:
        return decoded
    np.frombuffer(m, np.float32, y.size, ticket.slot * ticket.slot_bytes)[:] = y
    decoded["signal"] = SlotRef(ticket.token, ticket.slot, int(y.size))
    return decoded


def decode_into(decode, job, ticket: SlotTicket | None) -> dict:
    """A decode worker's task: ``decode(job)`` (:func:`~convfeat.extraction.worker.decode_item`, or a
    stand-in) with its signal handed back through ``ticket``'s slot (:func:`into_slot`)."""
    return into_slot(decode(job), ticket)
