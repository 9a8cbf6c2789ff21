from .adamw import adamw
from .param_groups import build_param_groups, is_no_decay
