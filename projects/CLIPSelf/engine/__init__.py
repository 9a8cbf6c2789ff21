from .config import apply_overrides, check_override_keys, resolve_device
from .ddp import create_ddp_model
from .trainer import Trainer
