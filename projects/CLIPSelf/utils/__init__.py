from .kmeans import kmeans
