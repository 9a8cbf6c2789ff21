from .kmeans import kmeans
from .copypaste import parse_copypaste
