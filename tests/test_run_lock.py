"""One run per output folder (speechbrain_trkd.run_lock)."""

import json
import os
import socket
import subprocess
import sys

import pytest
from recipe_runner import REPO, TRAIN_TRKD

from speechbrain_trkd.run_lock import LOCK_FILE, RunLock
from speechbrain_trkd.training_run import run_script


def write_lock(folder, pid, host=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_FILE).write_text(
        json.dumps(
            {"pid": pid, "host": host or socket.gethostname(), "started": "t"}
        )
    )


@pytest.fixture
def live_process():
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"]
    )
    yield process.pid
    process.kill()
    process.wait()


def test_a_live_holder_stops_the_second_run(tmp_path, live_process):
    write_lock(tmp_path, live_process)
    with pytest.raises(RuntimeError, match=f"in use by process {live_process}"):
        with RunLock(str(tmp_path)):
            pass
    assert (tmp_path / LOCK_FILE).exists()  # the holder keeps its lock


def test_a_killed_holder_is_taken_over(tmp_path, caplog):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    write_lock(tmp_path, gone.pid)
    with caplog.at_level("WARNING"), RunLock(str(tmp_path)):
        held = json.loads((tmp_path / LOCK_FILE).read_text())
        assert held["pid"] == os.getpid()
    assert f"lock of process {gone.pid}" in caplog.text
    assert not (tmp_path / LOCK_FILE).exists()


def test_another_hosts_lock_is_never_taken_silently(tmp_path):
    write_lock(tmp_path, 12345, host="elsewhere")
    with pytest.raises(RuntimeError, match="cannot be checked from here"):
        with RunLock(str(tmp_path)):
            pass


def test_recipe_refuses_a_busy_output_folder(tmp_path, live_process):
    """train_trkd.py stops at once, before preparing anything."""
    out = tmp_path / "out"
    write_lock(out, live_process)
    with pytest.raises(RuntimeError, match="in use by process"):
        run_script(
            TRAIN_TRKD,
            [
                str(REPO / "recipes/VoxCeleb/TRKD/hparams/ecapa_to_small.yaml"),
                f"--data_folder={tmp_path}/nothing",
                f"--output_folder={out}",
                f"--prep_folder={tmp_path}/prep",
            ],
        )
    assert not (tmp_path / "prep").exists()
    assert not (out / "train_log.txt").exists()
