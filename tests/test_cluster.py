"""`convfeat extract --cluster`: a real Dask LocalCluster (2 worker processes, one thread each).

The same features and ids as a single-process `extract`, a worker killed mid-run, a client killed
and re-run, a bad scheduler address, parts of another configuration, and the clear errors of a
missing `distributed` and of a filesystem the workers do not share.  One cluster for the module;
each run connects to its scheduler by address (as `--cluster tcp://...` does).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from convfeat.cli import app
from convfeat.extraction import ExtractError, Policy, extract, extract_on_cluster, parse_set
from convfeat.extraction import cluster as cluster_mod
from convfeat.store.file import StoreError, read_state
from convfeat.store.frames import load_frames

from conftest import chirp, noise, tone

distributed = pytest.importorskip("distributed", reason="needs the optional package distributed "
                                  "(pip install 'convfeat[dask]'; the test extra installs it)")
pytestmark = pytest.mark.xdist_group("cluster")

ROOT = Path(__file__).resolve().parents[1]
SHORT = Policy(window_seconds=4.0)     # convfeat-synth takes 4-s windows (its pooling needs >= 3.4 s)
CLI = "import sys\nfrom convfeat.cli import main\nsys.argv = ['convfeat'] + sys.argv[1:]\nmain()"


@pytest.fixture(scope="module")
def client(tmp_path_factory, _shared_kernels):
    """A LocalCluster of 2 worker processes, one thread each, and a client of it."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])   # the helpers below run in the workers
    cache = tmp_path_factory.mktemp("cluster-cache")               # not the user's cache (conftest)
    (cache / "kernels").symlink_to(_shared_kernels, target_is_directory=True)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                       env={"CONVFEAT_CACHE_DIR": str(cache)})
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """12 short clips (2-4 s) at three rates."""
    root = tmp_path_factory.mktemp("cluster-collection")
    for i in range(12):
        seconds, sr = 2.0 + i % 3, (12000, 22050, 16000)[i % 3]
        y = chirp(100 + 40 * i, 3000, seconds, sr=sr) + tone(200 + 30 * i, seconds, sr=sr, amp=0.2) \
            + noise(seconds, sr=sr, seed=i, amp=0.05)
        sf.write(root / f"clip{i:02d}.wav", y, sr)
    return root


def _same_file_contents(a: Path, b: Path) -> None:
    """ids, statuses and every feature dataset of two files agree (features to 1e-6)."""
    _, items_a, sets_a = read_state(a)
    _, items_b, sets_b = read_state(b)
    assert list(items_a.columns["id"]) == list(items_b.columns["id"])
    assert list(items_a.columns["status"]) == list(items_b.columns["status"])
    assert set(sets_a) == set(sets_b)
    for name, fs in sets_a.items():
        assert fs.done.all() and sets_b[name].done.all()
        assert fs.config == sets_b[name].config
        for ds, values in fs.datasets.items():
            np.testing.assert_allclose(sets_b[name].datasets[ds], values, rtol=1e-6, atol=1e-6,
                                       err_msg=f"{name}/{ds}")


# -- helpers run in the worker processes (client.run) --------------------------------------
def _slow_records(seconds: float) -> None:
    """Hold each journaled batch back (as slow inference would), so that a kill lands mid-run."""
    from convfeat.store.file import FeatureFile

    if not hasattr(FeatureFile, "_fast_record"):
        FeatureFile._fast_record = FeatureFile.record

    def record(self, updates):
        time.sleep(seconds)
        return FeatureFile._fast_record(self, updates)
    FeatureFile.record = record


def _fast_records() -> None:
    from convfeat.store.file import FeatureFile

    if hasattr(FeatureFile, "_fast_record"):
        FeatureFile.record = FeatureFile._fast_record
        del FeatureFile._fast_record


def _count_model_loads() -> None:
    """Empty the worker's model cache and count the models it loads from now on."""
    import convfeat.models
    from convfeat.extraction import cluster

    cluster._MODELS.clear()
    load = getattr(convfeat.models, "_real_load_model", convfeat.models.load_model)
    convfeat.models._real_load_model = load
    convfeat.models.loads = 0

    def counting(*args, **kwargs):
        convfeat.models.loads += 1
        return load(*args, **kwargs)
    convfeat.models.load_model = counting


def _model_loads() -> int:
    import convfeat.models

    loads = convfeat.models.loads
    convfeat.models.load_model = convfeat.models._real_load_model
    return loads


@pytest.fixture
def slow_workers(client):
    """Every worker holds each recorded batch back 0.3 s; restored (and 2 workers again) afterwards."""
    client.run(_slow_records, 0.3)
    yield
    client.wait_for_workers(2, timeout=60)
    client.run(_fast_records)


# -- the same file as a single-process run -------------------------------------------------
def test_same_features_as_single_process_for_mfcc_and_calibrated_sets(client, collection, tmp_path, monkeypatch):
    """(The convnet set of the default bn_mode: test_worker_killed_mid_task_resumes_from_its_journal.)"""
    sets = [parse_set("mfcc"), parse_set("random:bn_mode=calibrated")]
    single = extract([collection], tmp_path / "single.h5", sets, workers=0, calibration_size=4, frames=True)
    assert single.processed == 12
    counted = []

    class Bar:                                 # the client's progress bar: what reaches it
        def __init__(self, total, enabled):
            counted.append([total, 0, 0.0])

        def add(self, items, audio_seconds):
            counted[-1][1] += items
            counted[-1][2] += audio_seconds

        def close(self):
            pass

    monkeypatch.setattr(cluster_mod, "_Progress", Bar)
    client.run(_count_model_loads)
    out = tmp_path / "cluster.h5"
    summary = extract_on_cluster([collection], out, sets, cluster=client.scheduler.address, items_per_task=2,
                                 calibration_size=4, progress=True, command="test", frames=True)
    loads = client.run(_model_loads)
    assert (summary.total, summary.processed, summary.done_before, summary.failed) == (12, 12, 0, [])
    _same_file_contents(tmp_path / "single.h5", out)
    calibration_single = read_state(tmp_path / "single.h5")[2]["random-calibrated"].calibration
    calibration_cluster = read_state(out)[2]["random-calibrated"].calibration
    assert set(calibration_single) == set(calibration_cluster)
    for k, v in calibration_single.items():
        np.testing.assert_array_equal(calibration_cluster[k], v)
    # frame-level features (--frames) travel through the tasks and the merge too
    ids_a, times_a, frames_a = load_frames(tmp_path / "single.h5", "random-calibrated")
    ids_b, times_b, frames_b = load_frames(out, "random-calibrated")
    assert ids_a == ids_b and len(frames_a) == 12
    for ta, tb, fa, fb in zip(times_a, times_b, frames_a, frames_b):
        np.testing.assert_array_equal(ta, tb)
        np.testing.assert_allclose(fb, fa, rtol=1e-6, atol=1e-6)
    # the provenance names the cluster run; the parts are gone
    n, shards = cluster_mod.plan_shards([{"id": p.name} for p in sorted(collection.iterdir())], 2)
    attrs = read_state(out)[0]
    run = json.loads(attrs["cluster"])
    assert (run["kind"], run["address"], run["tasks"], run["split"]) == ("scheduler", client.scheduler.address,
                                                                         len(shards), n)
    assert json.loads(attrs["merged_from"]) == [cluster_mod.part_path(Path("."), i, n).name for i in shards]
    assert not Path(str(out) + ".parts").exists()
    # progress: every item and its audio reached the client's bar
    assert counted[0][:2] == [12, 12] and counted[0][2] == pytest.approx(summary.audio_seconds)
    # each worker process loaded the model at most once, for all its tasks
    assert len(shards) > 2 and sum(loads.values()) <= len(loads) == 2


# -- faults --------------------------------------------------------------------------------------
def test_worker_killed_mid_task_resumes_from_its_journal(client, collection, tmp_path, slow_workers):
    sets = [parse_set("convfeat-synth")]
    extract([collection], tmp_path / "single.h5", sets, SHORT, workers=0)
    out = tmp_path / "cluster.h5"
    worker_pids = set(client.run(os.getpid).values())
    killed = []

    def kill_a_writer():
        """SIGKILL the worker process that journals a batch first (its pid is in the entry's name)."""
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            for entry in Path(str(out) + ".parts").glob("*.journal/*.npz"):
                pid = int(entry.name.split("-")[1])
                if pid in worker_pids:                  # (always: the tasks write the parts)
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                break
            time.sleep(0.01)

    killer = threading.Thread(target=kill_a_writer)
    killer.start()
    with ThreadPoolExecutor(1) as pool:
        summary = pool.submit(extract_on_cluster, [collection], out, sets, SHORT, client.scheduler.address,
                              items_per_task=4, batch_size=1).result(timeout=300)
    killer.join()
    assert killed, "no worker was killed"
    # the task of the killed worker ran again and took up its journaled items
    assert summary.done_before >= 1 and summary.done_before + summary.processed == 12 and not summary.failed
    _same_file_contents(tmp_path / "single.h5", out)


def _finished_parts(parts: Path) -> dict:
    """{part file: (inode, mtime in ns)} of the parts whose task has ended (no journal, no lock)."""
    found = {}
    for p in parts.glob("part-*.h5"):
        if not Path(str(p) + ".journal").exists() and not Path(str(p) + ".lock").exists():
            st = p.stat()
            found[p] = (st.st_ino, st.st_mtime_ns)
    return found


def test_client_killed_then_rerun_skips_finished_parts(client, collection, tmp_path, slow_workers):
    out = tmp_path / "cluster.h5"
    parts = Path(str(out) + ".parts")
    args = ["extract", str(collection), "-o", str(out), "-m", "mfcc", "--cluster", client.scheduler.address,
            "--items-per-task", "1", "--batch-size", "1", "-q"]
    proc = subprocess.Popen([sys.executable, "-c", CLI] + args, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(_finished_parts(parts)) < 2 and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    finished = _finished_parts(parts)
    assert len(finished) >= 2
    n_finished = sum(len(read_state(p)[1]) for p in finished)
    summary = extract_on_cluster([collection], out, [parse_set("mfcc")], cluster=client.scheduler.address,
                                 items_per_task=1, batch_size=1, keep_parts=True)
    assert summary.done_before >= n_finished and summary.done_before + summary.processed == 12
    for p, stamp in finished.items():          # not recomputed, not rewritten
        st = p.stat()
        assert (st.st_ino, st.st_mtime_ns) == stamp, p.name
    extract([collection], tmp_path / "single.h5", [parse_set("mfcc")], workers=0)
    _same_file_contents(tmp_path / "single.h5", out)


def test_bad_scheduler_address_is_one_line_within_seconds(collection, tmp_path):
    parse_set("mfcc")                               # (the CLI's imports, which a process makes once, come first)
    start = time.monotonic()
    result = CliRunner().invoke(app, ["extract", str(collection), "-o", str(tmp_path / "f.h5"), "-m", "mfcc",
                                      "--cluster", "tcp://127.0.0.1:9"])
    assert time.monotonic() - start < 5           # the connect timeout (3 s) and little more
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach a Dask scheduler at tcp://127.0.0.1:9 "
                                                   "within 3 s")
    assert not (tmp_path / "f.h5").exists() and not (tmp_path / "f.h5.parts").exists()
    result = CliRunner().invoke(app, ["extract", str(collection), "-o", str(tmp_path / "f.h5"), "-m", "mfcc",
                                      "--cluster", "somehost:8786"])
    assert result.exit_code == 2 and "tcp://HOST:PORT" in result.output


def test_without_distributed_the_message_says_what_to_install(collection, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)      # import distributed now fails
    result = CliRunner().invoke(app, ["extract", str(collection), "-o", str(tmp_path / "f.h5"), "-m", "mfcc",
                                      "--cluster", "local:2"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == ['error: ' + cluster_mod.DASK_MISSING]
    assert 'pip install "convfeat[dask]"' in cluster_mod.DASK_MISSING


def test_a_worker_that_does_not_share_the_filesystem_says_so(collection, tmp_path):
    parts = tmp_path / "f.h5.parts"
    task = {"index": 1, "total": 1, "part": str(parts / "part-0001-of-0001.h5"), "marker": str(parts / "run.json"),
            "roots": [str(collection)], "items": [], "sets": [parse_set("mfcc")], "policy": Policy(),
            "batch_size": 1, "device": "cpu", "calibrations": {}, "topic": None, "command": ""}
    res = cluster_mod.run_task(task)                    # as a worker that cannot see the parts folder
    assert "cannot see" in res["error"] and str(parts) in res["error"] and "filesystem" in res["error"]
    parts.mkdir()
    (parts / "run.json").write_text("{}")
    res = cluster_mod.run_task(dict(task, roots=[str(tmp_path / "elsewhere")]))   # nor the audio
    assert "cannot see the input" in res["error"] and "elsewhere" in res["error"]
    assert not (parts / "part-0001-of-0001.h5").exists()


# -- entry points, kept parts, refusals -------------------------------------------------------
def test_entry_point_keep_parts_rerun_and_parts_of_another_configuration(client, collection, tmp_path):
    entry = tmp_path / "my_cluster.py"
    entry.write_text("def make():\n    from distributed import Client\n"
                     f"    return Client({client.scheduler.address!r})\n")
    out = tmp_path / "f.h5"
    parts = Path(str(out) + ".parts")
    summary = extract_on_cluster([collection], out, [parse_set("mfcc")], cluster=f"{entry}:make",
                                 items_per_task=4, keep_parts=True)
    assert summary.processed == 12
    assert json.loads(read_state(out)[0]["cluster"])["kind"] == "entry point"
    n, shards = cluster_mod.plan_shards([{"id": p.name} for p in sorted(collection.iterdir())], 4)
    assert sorted(p.name for p in parts.glob("part-*.h5")) == [cluster_mod.part_path(parts, i, n).name for i in shards]
    address = client.scheduler.address
    out.unlink()
    # parts made with another configuration, or split otherwise, are refused, saying what differs
    with pytest.raises(StoreError, match="another configuration in .*part-.*length_policy"):
        extract_on_cluster([collection], out, [parse_set("mfcc")], Policy(short="pad"), address, items_per_task=4)
    with pytest.raises(ExtractError, match="split into"):
        extract_on_cluster([collection], out, [parse_set("mfcc")], cluster=address, items_per_task=3)
    # the same call: every part is finished, so they are only merged (and then removed)
    stamps = {p: p.stat().st_mtime_ns for p in parts.glob("part-*.h5")}
    merged = extract_on_cluster([collection], out, [parse_set("mfcc")], cluster=address, items_per_task=4)
    assert (merged.processed, merged.done_before) == (0, 12) and not parts.exists()
    assert len(stamps) == len(shards) and read_state(out)[1].columns["status"].tolist() == ["ok"] * 12
    again = extract_on_cluster([collection], out, [parse_set("mfcc")], cluster=address)
    assert (again.processed, again.done_before) == (0, 12)
    # an output that exists and lacks items is not replaced
    extract([collection], tmp_path / "half.h5", [parse_set("mfcc")], shard="1/2", workers=0)
    with pytest.raises(ExtractError, match="exists already"):
        extract_on_cluster([collection], tmp_path / "half.h5", [parse_set("mfcc")], cluster=address)


def test_tasks_are_submitted_largest_shard_first_with_their_size_as_priority(client, collection, tmp_path,
                                                                             monkeypatch):
    """Hash shards differ in size; the largest go first so that a run ends on small tasks."""
    submitted = []
    real_submit = distributed.Client.submit

    def recording(self, fn, *args, **kwargs):
        if fn is cluster_mod.run_task:
            submitted.append((args[0]["index"], len(args[0]["items"]), kwargs.get("priority")))
        return real_submit(self, fn, *args, **kwargs)
    monkeypatch.setattr(distributed.Client, "submit", recording)
    summary = extract_on_cluster([collection], tmp_path / "f.h5", [parse_set("mfcc")],
                                 cluster=client.scheduler.address, items_per_task=2)
    assert summary.processed == 12
    n, shards = cluster_mod.plan_shards([{"id": p.name} for p in sorted(collection.iterdir())], 2)
    sizes = {i: len(its) for i, its in shards.items()}
    assert len(set(sizes.values())) > 1                      # the collection gives shards of several sizes
    assert sorted(i for i, _, _ in submitted) == sorted(sizes)
    assert [(size, prio) for _, size, prio in submitted] == [(sizes[i], sizes[i]) for i, _, _ in submitted]
    assert [size for _, size, _ in submitted] == sorted(sizes.values(), reverse=True)



def test_a_task_lets_its_worker_reuse_freed_arrays_instead_of_faulting_them_in_again(client, collection, tmp_path):
    # what keep_freed_memory does, in a process started as Dask's nanny starts workers: a 24-MB
    # array gets pages mapped for it alone (to be faulted in and zeroed, every time), and then no more
    code = ("import ctypes, numpy as np\n"
            "from convfeat.extraction.allocator import keep_freed_memory\n"
            "class Info(ctypes.Structure):\n"
            "    _fields_ = [(n, ctypes.c_size_t) for n in ('arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', "
            "'usmblks', 'fsmblks', 'uordblks', 'fordblks', 'keepcost')]\n"
            "libc = ctypes.CDLL(None)\n"
            "libc.mallinfo2.restype = Info\n"
            "def mapped_for_array():\n"
            "    before = libc.mallinfo2().hblkhd\n"
            "    a = np.ones(6 << 20, np.float32)\n"
            "    return libc.mallinfo2().hblkhd - before\n"
            "a = mapped_for_array(); ok = keep_freed_memory(); mapped_for_array(); print(a, ok, mapped_for_array())\n")
    env = dict(os.environ, MALLOC_TRIM_THRESHOLD_="65536")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if "mallinfo2" in res.stderr:
        pytest.skip("the C library has no mallinfo2 (glibc < 2.33)")
    before, ok, after = res.stdout.split()
    assert int(before) >= 24 << 20 and ok == "True" and int(after) == 0
    # and every task sets it in its worker process, which Dask started with that setting
    assert set(client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values()) == {"65536"}
    extract_on_cluster([collection], tmp_path / "f.h5", [parse_set("mfcc")], cluster=client.scheduler.address,
                       items_per_task=2)
    done = client.run(lambda: __import__("convfeat.extraction.allocator", fromlist=["_done"])._done)
    assert list(done.values()) == [True, True]
