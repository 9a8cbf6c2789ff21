"""clipself.engine.runner: train_net.py jobs side by side, progress, results as data."""
import json
import math
import os

import pytest

from clipself.engine.runner import (
    TrainNetJob,
    last_line,
    log_progress,
    read_eval_results,
    run_jobs,
    write_eval_results,
)


def test_log_progress_parsing():
    log = ("[11/24 14:12:30 d2.utils.events]:  eta: 0:03:10  iter: 19  total_loss: 0.5\n"
           "[11/24 14:12:40 d2.utils.events]:  eta: 0:02:58  iter: 39  total_loss: 0.4\n")
    assert log_progress(log) == "iteration 40, ETA 0:02:58"
    assert log_progress("[d2.engine.train_loop]: Starting training from iteration 0") is None


def test_eval_results_round_trip_as_strict_json(tmp_path):
    results = {"bbox": {"AP": 12.5, "AP50_novel": float("nan")}, "sem_seg": {"mIoU": 3.0}}
    write_eval_results(str(tmp_path / "eval_results.json"), results, iteration=4,
                       config_file="c.py")
    text = (tmp_path / "eval_results.json").read_text()
    assert "NaN" not in text and json.loads(text)["results"]["bbox"]["AP50_novel"] is None
    back = read_eval_results(str(tmp_path))
    assert back["iteration"] == 4 and back["results"]["bbox"]["AP"] == 12.5
    assert math.isnan(back["results"]["bbox"]["AP50_novel"])
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # written atomically
    with pytest.raises(FileNotFoundError, match="wrote no evaluation"):
        read_eval_results(str(tmp_path / "missing"))


def test_failed_job_error_names_its_cause(tmp_path):
    assert last_line("Traceback ...\n  File x\nFileNotFoundError: gone\n\n") == (
        "FileNotFoundError: gone")
    assert last_line("") == "(empty log)"
    jobs = [TrainNetJob("bad", ["--config-file", "configs/does_not_exist.py"],
                        log_file=str(tmp_path / "bad.log"))]
    with pytest.raises(RuntimeError, match=r"\[bad\] failed \(exit 1\): .*does_not_exist"):
        run_jobs(jobs, env=dict(os.environ), every=1.0, log=lambda msg: None)
    with pytest.raises(ValueError, match="unique"):
        run_jobs([jobs[0], jobs[0]])
