"""Running things: the trainer, validated overrides, DDP on CPU and GPU, the Python predictor,
``train_net.py`` job runner, checkpoint-file conversion and the toy CLIP's pre-training."""
from .checkpointer import Checkpointer
from .config import apply_overrides, check_override_keys, check_override_types, resolve_device
from .convert import convert_clip_checkpoint, convert_fvit_checkpoint
from .ddp import create_ddp_model
from .predictor import OpenVocabPredictor
from .runner import (
    EVAL_RESULTS_FILE,
    JobResult,
    TrainNetJob,
    read_eval_results,
    run_jobs,
    write_eval_results,
)
from .trainer import Trainer, unwrap_model
from .writers import JSONWriter, default_writers
