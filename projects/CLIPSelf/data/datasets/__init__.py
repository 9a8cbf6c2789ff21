"""Dataset registration (the package's only import-time side effect; no disk access)."""
from . import builtin as _builtin  # noqa: F401  (only registration)
from .paths import dataset_root, require_path
