from . import datasets  # only registration
