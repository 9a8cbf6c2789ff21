"""Small shared helpers that import nothing else of the package (a leaf)."""
from .atomic import atomic_path
from .kmeans import kmeans
