"""Let Detectron2's ``LVISEvaluator`` run with the ``lvis`` package on NumPy >= 1.24.

``lvis`` 0.5.3 (the last PyPI release) calls ``np.float`` in ``LVISEval.accumulate``; the alias of
the builtin ``float`` was removed in NumPy 1.24, so every LVIS evaluation fails with
``AttributeError: module 'numpy' has no attribute 'float'``. The fix in lvis-api's master (PR #39)
was never released. :func:`patch_lvis_numpy_aliases` gives the ``lvis.eval`` module, and only it,
a view of NumPy that still has the alias; NumPy itself is untouched. Importing
:mod:`clipself.evaluation` applies it.
"""
import logging

import numpy

__all__ = ["patch_lvis_numpy_aliases"]


class _NumpyWithAliases:
    """NumPy as seen by ``lvis.eval``: every attribute of ``numpy`` plus the removed aliases."""

    float = float  # what ``np.float`` always was
    int = int
    bool = bool

    def __getattr__(self, name):
        return getattr(numpy, name)


def patch_lvis_numpy_aliases() -> bool:
    """Give ``lvis.eval`` the removed NumPy aliases (idempotent, harmless on older NumPy).

    Returns:
        bool: whether ``lvis`` is installed (and now patched).
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        import lvis.eval as lvis_eval
    except ImportError:
        return False
    finally:
        # importing lvis calls logging.basicConfig(); keep the root logger as the caller set it
        root.handlers[:] = handlers
        root.setLevel(level)
    if not isinstance(lvis_eval.np, _NumpyWithAliases):
        lvis_eval.np = _NumpyWithAliases()
    return True
