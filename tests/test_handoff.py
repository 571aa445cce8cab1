"""Decoded signals handed back from decode workers through shared memory (convfeat/extraction/handoff.py):
the same values as the pickled way, every slot free again after use, nothing left open, and the plain
way wherever a slot cannot carry the signal."""
from __future__ import annotations

import importlib
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from convfeat.extraction import decoding, handoff
from convfeat.extraction.handoff import SignalSlots, SlotRef, decode_into, into_slot

pytestmark = pytest.mark.skipif(not hasattr(os, "memfd_create") or not Path("/proc/self/fd").is_dir(),
                                reason="shared slots need Linux (memfd_create and /proc)")

# Decode stand-ins for spawned workers, in a small torch-free module of their own (a worker
# importing this test module would import pytest and the package's test helpers).
STANDINS = '''
import os
import numpy as np


def signal_of(job):
    """A signal that says which job it is: job, job + 1, ... (float32)."""
    n = 1000 + 37 * (job % 5)
    return np.arange(job, job + n, dtype=np.float32)


def decode(job):
    """A job as the pipeline makes them, (item, policy, want_mfcc); the item's id is an int."""
    item = job[0]
    if item["id"] == "crash":
        os._exit(3)   # as a decoder crashing in C would
    return {"id": item["id"], "status": "ok", "signal": signal_of(item["id"])}
'''


@pytest.fixture
def standins(tmp_path_factory, monkeypatch):
    folder = tmp_path_factory.mktemp("standins")
    (folder / "convfeat_handoff_standins.py").write_text(STANDINS)
    monkeypatch.syspath_prepend(str(folder))   # spawned workers start with this process's sys.path
    return importlib.import_module("convfeat_handoff_standins")


@pytest.fixture
def through_slots(standins, monkeypatch) -> list:
    """decoded_stream runs the stand-in decode; the list gets, per signal the run collects, whether
    it came through a slot."""
    monkeypatch.setattr(decoding, "decode_item", standins.decode)
    seen = []
    real_collect = SignalSlots.collect

    def collect(self, decoded, ticket):
        seen.append(isinstance(decoded.get("signal"), SlotRef))
        return real_collect(self, decoded, ticket)

    monkeypatch.setattr(SignalSlots, "collect", collect)
    return seen


def _jobs(ids: list) -> list:
    return [({"id": i, "path": f"{i}.wav"}, None, False) for i in ids]


def _memfds() -> int:
    """How many of this process's open files are the hand-off's shared files."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += "convfeat-decoded" in os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    return n


def test_a_signal_goes_through_a_slot_and_comes_back_equal_in_this_process():
    slots = SignalSlots(3, slot_bytes=4096)
    y = np.linspace(-1, 1, 1000, dtype=np.float32)
    tickets = [slots.take() for _ in range(3)]
    assert slots.take() is None and len({t.slot for t in tickets}) == 3   # three distinct slots, then none
    out = into_slot({"id": "a", "signal": y.copy()}, tickets[1])
    ref = out["signal"]
    assert isinstance(ref, SlotRef) and (ref.slot, ref.samples, ref.nbytes) == (tickets[1].slot, 1000, 4000)
    back = slots.collect(out, tickets[1])["signal"]
    assert back.dtype == np.float32 and np.array_equal(back, y)
    assert slots.take() == tickets[1]   # collected: its slot is free again
    slots.close()


def test_what_a_slot_cannot_carry_comes_back_unchanged():
    slots = SignalSlots(1, slot_bytes=4096)
    ticket = slots.take()
    too_long = np.zeros(1025, np.float32)           # 4100 bytes > 4096
    wrong_type = np.zeros(10, np.float64)
    for y in (too_long, wrong_type):
        assert into_slot({"signal": y}, ticket)["signal"] is y
    assert into_slot({"signal": np.ones(3, np.float32)}, None)["signal"].tolist() == [1, 1, 1]
    assert into_slot({"status": "failed"}, ticket) == {"status": "failed"}
    gone = handoff.SlotTicket("/nonexistent/convfeat-slots", "x" * 32, 0, 4096)   # the file cannot be opened
    y = np.ones(4, np.float32)
    assert into_slot({"signal": y}, gone)["signal"] is y
    # the run's side takes a plain signal as it is, and frees the slot all the same
    assert slots.collect({"signal": y}, ticket)["signal"] is y and slots.take() == ticket
    slots.close()


def test_a_signal_in_another_slot_than_its_own_is_refused():
    slots = SignalSlots(2, slot_bytes=4096)
    a, b = slots.take(), slots.take()
    out = into_slot({"signal": np.ones(8, np.float32)}, a)
    with pytest.raises(RuntimeError, match="not its own"):
        slots.collect(out, b)
    slots.close()


def test_a_worker_process_hands_its_signal_back_through_the_slot(standins):
    slots = SignalSlots(2, slot_bytes=1 << 16)
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        for job in (3, 8, 13):   # slots are reused: the worker maps the file once
            ticket = slots.take()
            out = pool.submit(decode_into, standins.decode, _jobs([job])[0], ticket).result()
            assert isinstance(out["signal"], SlotRef)   # it did not come back pickled
            got = slots.collect(out, ticket)["signal"]
            assert np.array_equal(got, standins.signal_of(job))
    slots.close()


@pytest.mark.parametrize("shared", [True, False])
def test_decoded_stream_gives_the_same_signals_in_order_either_way(standins, through_slots, monkeypatch, shared):
    monkeypatch.setattr(decoding, "SHARED_MEMORY", shared)
    before = _memfds()
    jobs = list(range(23))
    out = list(decoding.decoded_stream(_jobs(jobs), 2, ahead=3))
    assert [d["id"] for d in out] == jobs
    for d in out:
        assert isinstance(d["signal"], np.ndarray) and np.array_equal(d["signal"], standins.signal_of(d["id"]))
    assert through_slots == ([True] * len(jobs) if shared else [])
    assert _memfds() == before   # the shared file is closed when the stream ends


def test_slots_survive_a_worker_that_dies(standins, through_slots):
    """The slots of the jobs lost with a dead worker are free again: every later signal still comes
    back through shared memory, and the crashing item alone fails."""
    jobs = [0, 1, 2, "crash", 4, 5, 6, 7, 8, 9, 10, 11]
    out = list(decoding.decoded_stream(_jobs(jobs), 2, ahead=3))
    assert [d["id"] for d in out] == jobs
    assert [d["status"] for d in out] == ["failed" if j == "crash" else "ok" for j in jobs]
    assert through_slots == [True] * (len(jobs) - 1)   # the crashed item returned nothing to collect
    for d in out:
        if d["status"] == "ok":
            assert np.array_equal(d["signal"], standins.signal_of(d["id"]))


def test_ahead_bytes_counts_signals_waiting_in_slots():
    assert decoding._nbytes({"signal": SlotRef("t", 0, 1000), "mfcc": np.zeros(120, np.float32), "id": "x",
                             "windows": 3, "peak": 0.5}) == 4000 + 480
