"""Data: dataset registration (importing registers them, no disk access), mappers, region
sampling for CLIPSelf, and vocabularies built from dataset metadata."""
from . import datasets  # only registration
from .vocabulary import dataset_class_names, dataset_seen_classes, dataset_vocabulary
