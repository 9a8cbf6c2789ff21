import torch

from clipself.utils import kmeans


def test_kmeans_recovers_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[10.0, 0.0], [0.0, 10.0], [-10.0, -10.0]])
    truth = torch.arange(3).repeat_interleave(20)
    x = centres[truth] + 0.3 * torch.randn(60, 2, generator=g)
    labels, c = kmeans(x, 3, cosine=False, seed=1)
    # same partition up to relabelling
    for cluster in range(3):
        assert len(torch.unique(labels[truth == cluster])) == 1
    assert len(torch.unique(labels)) == 3 and c.shape == (3, 2)


def test_kmeans_cosine_and_small_inputs():
    x = torch.tensor([[1.0, 0.0], [2.0, 0.1], [0.0, 1.0], [0.1, 3.0]])
    labels, c = kmeans(x, 2, seed=0)
    assert labels[0] == labels[1] and labels[2] == labels[3] and labels[0] != labels[2]
    assert torch.allclose(c.norm(dim=-1), torch.ones(2))
    labels, _ = kmeans(x[:1], 5)
    assert labels.tolist() == [0]
