"""TeacherCache: keys, namespaces per teacher weights, memory and disk, exact values."""
import torch
from torch import nn

from clipself.distill.teacher_cache import TeacherCache, crop_keys, weights_hash


def test_crop_keys_name_image_box_and_size():
    keys = crop_keys("a.png", torch.tensor([[0.0, 1.5, 10.25, 20.0], [3.0, 3.0, 4.0, 4.0]]), 224)
    assert keys == ["a.png|0.0000,1.5000,10.2500,20.0000@224",
                    "a.png|3.0000,3.0000,4.0000,4.0000@224"]
    assert crop_keys("a.png", torch.tensor([[0.0, 1.5, 10.25, 20.0]]), 336)[0] != keys[0]


def test_weights_hash_changes_with_any_weight():
    m = nn.Linear(3, 2)
    h = weights_hash(m)
    assert h == weights_hash(m)
    with torch.no_grad():
        m.bias[0] += 1e-7
    assert weights_hash(m) != h


def _compute_counter(table, calls):
    def compute(idx):
        calls.append(list(idx))
        return table[idx]
    return compute


def test_embed_computes_only_missing_rows_and_returns_exact_values(tmp_path):
    teacher = nn.Linear(4, 4)
    table = torch.randn(5, 8)
    keys = [f"k{i}" for i in range(5)]
    images = ["im0", "im0", "im1", "im1", "im1"]
    cache = TeacherCache()
    cache.bind(teacher)
    calls = []
    first = cache.embed(images[:3], keys[:3], _compute_counter(table[:3], calls))
    assert torch.equal(first, table[:3]) and calls == [[0, 1, 2]]
    # rows 1 and 2 are cached; only rows 3 and 4 (positions 1 and 2 of this call) are computed
    second = cache.embed(images[1:], keys[1:], _compute_counter(table[1:], calls))
    assert calls[-1] == [2, 3]
    assert torch.equal(second, table[1:])
    assert (cache.hits, cache.misses) == (2, 5)
    # all cached: nothing computed
    third = cache.embed(images, keys, _compute_counter(None, calls))
    assert len(calls) == 2 and torch.equal(third, table)


def test_disk_entries_are_reused_by_a_new_cache_of_the_same_teacher_only(tmp_path):
    teacher = nn.Linear(4, 4)
    table = torch.randn(3, 8)
    keys, images = ["a", "b", "c"], ["x.png", "x.png", "y.png"]
    one = TeacherCache(str(tmp_path))
    one.bind(teacher)
    one.embed(images, keys, lambda idx: table[idx])
    two = TeacherCache(str(tmp_path))
    two.bind(teacher)
    calls = []
    assert torch.equal(two.embed(images, keys, _compute_counter(table, calls)), table)
    assert calls == []
    other = nn.Linear(4, 4)  # another teacher: another namespace, recomputed
    three = TeacherCache(str(tmp_path))
    three.bind(other)
    three.embed(images, keys, _compute_counter(table, calls))
    assert calls == [[0, 1, 2]]


def test_embed_before_bind_is_an_error():
    cache = TeacherCache()
    try:
        cache.embed(["i"], ["k"], lambda idx: torch.zeros(len(idx), 2))
    except RuntimeError as err:
        assert "bind" in str(err)
    else:
        raise AssertionError("embed() without bind() must fail")


def test_memory_bound_evicts_to_disk_and_reads_back(tmp_path):
    teacher = nn.Linear(4, 4)
    table = torch.randn(4, 8)
    keys, images = ["a", "b", "c", "d"], ["i0", "i1", "i2", "i3"]
    cache = TeacherCache(str(tmp_path), max_images=2)
    cache.bind(teacher)
    cache.embed(images, keys, lambda idx: table[idx])
    assert len(cache) == 2  # two images' entries in memory, all four on disk
    calls = []
    assert torch.equal(cache.embed(images, keys, _compute_counter(table, calls)), table)
    assert calls == []
    try:
        TeacherCache(None, max_images=2)
    except ValueError as err:
        assert "directory" in str(err)
    else:
        raise AssertionError("max_images without a directory must fail")
