"""Batches on Dask: the same records as in-process, resumable across engines, nothing lost to a dead worker."""

import csv
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

from segsem_lite.batch import RECORD_FIELDS, evaluate_dataset, extract_dataset
from segsem_lite.engine import Engine, ModelRef
from segsem_lite.errors import SegSEMError
from segsem_lite.synth.independent import write_independent_dataset

distributed = pytest.importorskip("distributed")

KEYS = [f for f in RECORD_FIELDS if not f.startswith("ms_")]


def _records(path):
    with open(path, newline="") as fh:
        return [{k: row[k] for k in KEYS} for row in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_independent_dataset(tmp_path_factory.mktemp("eng") / "d", n_per_condition=3, seed=9, size=160,
                                     conditions=("bright_resist", "dark_resist", "no_edge_band", "low_snr"))


@pytest.fixture(scope="module")
def serial(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    extract_dataset(data, out, model=None, progress=False)
    return _records(out / "records.csv")


def test_engine_rejects_two_clusters_and_loaded_models(data, tmp_path):
    with pytest.raises(SegSEMError, match="give one"):
        Engine(workers=2, scheduler="tcp://127.0.0.1:1")
    with pytest.raises(SegSEMError, match="--workers -1"):
        Engine(workers=-1)
    with pytest.raises(SegSEMError, match="by name"):
        extract_dataset(data, tmp_path, model=object(), engine=Engine(workers=1), progress=False)


def test_local_cluster_writes_the_serial_records_and_resumes_a_serial_run(data, serial, tmp_path):
    out = tmp_path / "dask"
    rows = extract_dataset(data, out, model=ModelRef("traditional"), engine=Engine(workers=2), progress=False)
    assert len(rows) == len(serial) > 10
    assert _records(out / "records.csv") == serial
    # a run started in-process on half the images, finished on the cluster
    half = tmp_path / "half"
    stems = sorted({r["stem"] for r in serial})
    extract_dataset(data, half, stems=stems[: len(stems) // 2], progress=False)
    extract_dataset(data, half, model=ModelRef("traditional"), resume=True, engine=Engine(workers=2), progress=False)
    assert _records(half / "records.csv") == serial


def test_evaluate_on_a_cluster_matches_in_process(data):
    a = evaluate_dataset(data, progress=False).per_sample
    b = evaluate_dataset(data, model=ModelRef("traditional"), engine=Engine(workers=2), progress=False).per_sample
    assert a.drop(columns=[]).equals(b)


def test_a_worker_killed_mid_run_loses_nothing(data, serial, tmp_path):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=50) as cluster, Client(cluster) as client:
        out = tmp_path / "killed"
        result = {}
        run = threading.Thread(target=lambda: result.setdefault("rows", extract_dataset(
            data, out, model=ModelRef("traditional"), engine=Engine(scheduler=cluster.scheduler_address),
            progress=False)))
        run.start()
        victim = None
        deadline = time.time() + 60
        while victim is None and time.time() < deadline and run.is_alive():
            busy = {w: tasks for w, tasks in client.processing().items() if tasks}
            if busy:
                victim = next(iter(busy))
                try:  # the process dies with its image half done; the call itself then loses its connection
                    client.run(os._exit, 1, workers=[victim], on_error="ignore")
                except OSError:
                    pass
            time.sleep(0.05)
        run.join(timeout=240)
        assert victim is not None, "no worker was busy to kill"
        assert not run.is_alive()
    assert _records(out / "records.csv") == serial
    assert all(r["status"] != "error" or r["message"] for r in result["rows"])


@pytest.mark.skipif(shutil.which("dask") is None and not os.path.exists(os.path.join(os.path.dirname(sys.executable),
                                                                                   "dask")),
                    reason="the dask command is not installed")
def test_cli_against_a_scheduler_and_workers_started_by_hand(data, serial, tmp_path):
    bindir = os.path.dirname(sys.executable)
    dask = os.path.join(bindir, "dask") if os.path.exists(os.path.join(bindir, "dask")) else "dask"
    info = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", ":0",
                               "--scheduler-file", str(info)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.time() + 60
        while not info.exists() and time.time() < deadline:
            time.sleep(0.2)
        for _ in range(2):
            procs.append(subprocess.Popen([dask, "worker", "--scheduler-file", str(info), "--nthreads", "1",
                                           "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        import json

        address = json.loads(info.read_text())["address"]
        out = tmp_path / "hand"
        r = subprocess.run([sys.executable, "-m", "segsem_lite.cli", "extract", str(data), "--out", str(out),
                            "--model", "traditional", "--scheduler", address, "--quiet"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode in (0, 1), r.stderr
        assert _records(out / "records.csv") == serial
        bad = subprocess.run([sys.executable, "-m", "segsem_lite.cli", "extract", str(data), "--out",
                              str(tmp_path / "x"), "--model", "traditional", "--scheduler", "tcp://127.0.0.1:9",
                              "--quiet"], capture_output=True, text=True, timeout=120)
        assert bad.returncode == 2 and bad.stderr.startswith("segsem: error: --scheduler tcp://127.0.0.1:9")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
