from .kmeans import kmeans
from .copypaste import parse_copypaste
from .atomic import atomic_path
