"""Run ``train_net.py`` jobs from Python (the paper scripts' engine): side by side where they fit
on the machine, each one's progress (iteration, ETA) relayed while it runs, and each one's
results read back as data from the ``eval_results.json`` that ``train_net.py`` writes.

Example::

    >>> from clipself.engine.runner import TrainNetJob, run_jobs
    >>> job = TrainNetJob("toy", ["--config-file", "configs/Synthetic/fvit_toy_clipself.py",
    ...                           'train.output_dir="output/toy"'], output_dir="output/toy")
    >>> run_jobs([job])["toy"].results["bbox"]["AP50_novel"]
"""
import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from ..utils.atomic import atomic_path

__all__ = [
    "EVAL_RESULTS_FILE",
    "TrainNetJob",
    "JobResult",
    "run_jobs",
    "read_eval_results",
    "write_eval_results",
    "log_progress",
    "last_line",
]

#: the file ``train_net.py`` writes into ``train.output_dir`` after every evaluation
EVAL_RESULTS_FILE = "eval_results.json"

#: the iteration and ETA of a Detectron2 training log line
_ETA = re.compile(r"eta: (\S+)\s+iter: (\d+)")

#: the repository root (train_net.py's folder)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def _jsonable(obj: Any) -> Any:
    """Evaluator results as strict JSON: NaN and infinities become null, tensors / numpy
    scalars plain numbers, mappings plain dicts (order kept)."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _nan_for_null(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _nan_for_null(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_for_null(v) for v in obj]
    return float("nan") if obj is None else obj


def write_eval_results(path: str, results: Mapping[str, Any], **info: Any) -> None:
    """Write ``{"results": <the evaluators' nested dict>, **info}`` as JSON, atomically (a
    temporary file in the same folder, then renamed).

    Args:
        path (str): the JSON file.
        results (dict): what ``inference_on_dataset`` returned (task -> metric -> value).
        info: more top-level entries (config file, checkpoint, iteration, ...).
    """
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump({**_jsonable(info), "results": _jsonable(results)}, f, indent=2)


def read_eval_results(output_dir: str) -> Dict[str, Any]:
    """The ``eval_results.json`` of a ``train_net.py`` output folder, nulls read back as NaN.

    Returns:
        dict: ``results`` (task -> metric -> value), ``config_file``, ``checkpoint``,
        ``iteration``.
    Raises:
        FileNotFoundError: naming the file (the run did not evaluate, or failed).
    """
    path = output_dir if output_dir.endswith(".json") else os.path.join(
        output_dir, EVAL_RESULTS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} not found: the train_net.py run wrote no evaluation (no dataloader.evaluator,"
            " or it failed before evaluating)"
        )
    with open(path) as f:
        data = json.load(f)
    data["results"] = _nan_for_null(data.get("results", {}))
    return data


def log_progress(text: str) -> Optional[str]:
    """``"iteration N, ETA H:MM:SS"`` from the last progress line of a train_net.py log, or None
    (no iteration logged yet)."""
    found = _ETA.findall(text)
    if not found:
        return None
    eta, it = found[-1]
    return f"iteration {int(it) + 1}, ETA {eta}"


def last_line(text: str) -> str:
    """The last non-blank line of a log (for a crashed job: the exception), for error messages
    that must say why even when only their own line is shown (e.g. a CI summary)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][-500:] if lines else "(empty log)"


@dataclass
class TrainNetJob:
    """One ``train_net.py`` run.

    Attributes:
        name (str): the job's name in progress lines and results.
        args (list[str]): ``train_net.py`` arguments (``--config-file``, overrides, ...).
        output_dir (str): its ``train.output_dir`` (where ``eval_results.json`` appears);
            None: no results are read.
        log_file (str): where its stdout and stderr go; default ``output_dir/train_net.log``.
    """

    name: str
    args: List[str]
    output_dir: Optional[str] = None
    log_file: Optional[str] = None

    def log_path(self) -> str:
        if self.log_file:
            return self.log_file
        if not self.output_dir:
            raise ValueError(f"job {self.name}: give output_dir or log_file")
        return os.path.join(self.output_dir, "train_net.log")


@dataclass
class JobResult:
    """What a finished job left: its log text and its evaluation (``results``: task -> metric ->
    value; empty when it wrote none)."""

    name: str
    log: str
    results: Dict[str, Dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0


def _start(job: TrainNetJob, env: Mapping[str, str], log: Callable[[str], None]):
    path = job.log_path()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    log(f"running [{job.name}] (log {path}): train_net.py " + " ".join(job.args))
    fh = open(path, "w")
    cmd = [sys.executable, os.path.join(REPO_ROOT, "train_net.py")] + list(job.args)
    proc = subprocess.Popen(cmd, env=dict(env), cwd=REPO_ROOT, stdout=fh,
                            stderr=subprocess.STDOUT)
    return proc, fh, path, time.time()


def run_jobs(
    jobs: Sequence[TrainNetJob],
    *,
    env: Optional[Mapping[str, str]] = None,
    parallel: int = 2,
    threads: Optional[int] = 1,
    every: float = 30.0,
    log: Callable[[str], None] = print,
) -> Dict[str, JobResult]:
    """Run ``train_net.py`` jobs, ``parallel`` at a time, and read their results.

    Args:
        jobs (list[TrainNetJob]): the runs (names must be unique).
        env (dict): their environment (default: this process's).
        parallel (int): jobs running at once (2 on a 2-core machine with 1 thread each).
        threads (int or None): ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` of each job; None
            keeps ``env``'s.
        every (float): seconds between progress lines (iteration, ETA) of each running job.
        log (callable): where progress lines go.
    Returns:
        dict: job name -> :class:`JobResult`, in the order of ``jobs``.
    Raises:
        RuntimeError: a job failed: its name, exit code, the last line of its log (the
            exception) and the log's path; the jobs still running are stopped.
    """
    names = [j.name for j in jobs]
    if len(set(names)) != len(names):
        raise ValueError(f"job names must be unique: {names}")
    env = dict(os.environ if env is None else env)
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    pending, running, done = list(jobs), {}, {}
    shown, last = {}, time.time()
    try:
        while pending or running:
            while pending and len(running) < max(1, parallel):
                job = pending.pop(0)
                running[job.name] = (job, *_start(job, env, log))
            time.sleep(0.5)
            for name, (job, proc, fh, path, t0) in list(running.items()):
                if proc.poll() is None:
                    continue
                fh.close()
                del running[name]
                with open(path, errors="replace") as f:
                    text = f.read()
                if proc.returncode != 0:
                    print(text[-6000:])
                    raise RuntimeError(f"train_net.py [{name}] failed (exit {proc.returncode}): "
                                       f"{last_line(text)}; log: {path}")
                results = {}
                if job.output_dir and os.path.isfile(
                        os.path.join(job.output_dir, EVAL_RESULTS_FILE)):
                    results = read_eval_results(job.output_dir)["results"]
                done[name] = JobResult(name, text, results, round(time.time() - t0, 2))
            if time.time() - last >= every:
                last = time.time()
                for name, (job, proc, fh, path, t0) in running.items():
                    with open(path, errors="replace") as f:
                        msg = log_progress(f.read())
                    if msg and msg != shown.get(name):
                        log(f"[{name}] {msg}")
                        shown[name] = msg
    finally:
        for job, proc, fh, path, t0 in running.values():
            proc.kill()
            proc.wait()
            fh.close()
    return {n: done[n] for n in names}
