import os
import threading

import pytest

from clipself.utils import atomic_path


def test_atomic_path_replaces_and_cleans_up(tmp_path):
    path = str(tmp_path / "sub" / "a.json")  # parent folder is created
    with atomic_path(path) as tmp:
        assert tmp != path and os.path.dirname(tmp) == os.path.dirname(path)
        with open(tmp, "w") as f:
            f.write("one")
    assert open(path).read() == "one"
    assert os.listdir(os.path.dirname(path)) == ["a.json"]


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    path = str(tmp_path / "a.txt")
    with open(path, "w") as f:
        f.write("old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("writer died")
    assert open(path).read() == "old"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_concurrent_writers_of_one_path_all_succeed(tmp_path):
    # the CI failure this guards against: two train_net.py jobs filled the same text-embedding
    # cache entry; with a shared "<path>.tmp" the second os.replace raised FileNotFoundError.
    # The barrier forces every writer to hold its temporary file open at the same time.
    path = str(tmp_path / "cache.pt")
    n = 4
    barrier = threading.Barrier(n)
    errors = []

    def write(i):
        try:
            with atomic_path(path) as tmp:
                with open(tmp, "w") as f:
                    f.write(f"writer {i} " * 1000)
                barrier.wait(timeout=10)
        except Exception as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    text = open(path).read()
    assert text in {f"writer {i} " * 1000 for i in range(n)}  # one complete file, not a mix
    assert os.listdir(tmp_path) == ["cache.pt"]
