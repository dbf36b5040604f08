"""k-means and nearest-centroid search, flat and two-level (large k)."""

from __future__ import annotations

import numpy as np
import pytest

from maxsim.compression import kmeans


def _clustered(n: int, n_topics: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    topics = rng.normal(size=(n_topics, dim))
    x = topics[rng.integers(0, n_topics, n)] + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _mse(x: np.ndarray, c: np.ndarray) -> float:
    nearest = np.argmax(x @ c.T, axis=1)
    return float(((x - c[nearest]) ** 2).sum(1).mean())


def test_two_level_matches_flat_quality(monkeypatch):
    x = _clustered(40_000, 300)
    flat = kmeans.train_centroids(x, 512, niter=10)
    monkeypatch.setattr(kmeans, "FLAT_MAX_CENTROIDS", 64)  # 512 centroids now go two-level
    two = kmeans.train_centroids(x, 512, niter=10)
    assert two.shape == (512, 32)
    np.testing.assert_allclose(np.linalg.norm(two, axis=1), 1.0, atol=1e-5)
    assert len(np.unique(two.round(5), axis=0)) == 512
    # per-cell training alone leaves cell borders badly placed; the whole-table Lloyd steps fix it
    assert _mse(x, two) <= 1.05 * _mse(x, flat), (_mse(x, two), _mse(x, flat))


def test_two_level_without_refinement_is_worse(monkeypatch):
    # the check above can fail: without the refinement the same training is measurably worse
    x = _clustered(40_000, 300)
    monkeypatch.setattr(kmeans, "FLAT_MAX_CENTROIDS", 64)
    refined = kmeans.train_centroids(x, 512, niter=10)
    monkeypatch.setattr(kmeans, "REFINE_ITERS", 0)
    raw = kmeans.train_centroids(x, 512, niter=10)
    assert _mse(x, refined) < _mse(x, raw)


def test_approximate_assignment_finds_the_nearest_centroid_almost_always(monkeypatch):
    x = _clustered(30_000, 400, seed=1)
    c = kmeans.train_centroids(x, 1024, niter=5)
    exact = kmeans.assign_centroids(x, c)
    np.testing.assert_array_equal(exact, np.argmax(x @ c.T, axis=1))
    monkeypatch.setattr(kmeans, "FLAT_MAX_CENTROIDS", 256)
    index = kmeans.centroid_index(c)
    assert isinstance(index, kmeans.CellIndex) and index.ntotal == 1024 and index.nprobe == kmeans.ASSIGN_PROBES
    approx = kmeans.assign_centroids(x, c, index=index)
    assert approx.min() >= 0 and approx.max() < 1024
    assert np.mean(approx == exact) >= 0.98
    # a miss is a near neighbour: its dot product is close to the best one
    best = (x * c[exact]).sum(1)
    got = (x * c[approx]).sum(1)
    # (4 probes, ASSIGN_PROBES: the mean loss measured 0.00102 here; 8 probes gave under 1e-3)
    assert np.all(got <= best + 1e-5) and float(np.mean(best - got)) < 2e-3


def test_cells_over_threads_find_what_one_loop_finds_and_restore_blas_threads():
    from threadpoolctl import threadpool_info

    # duplicated centroids make exact ties (inside a cell), which must go to the same id every time
    c = _clustered(2048, 100, seed=2)
    c = np.concatenate([c, c[:512]])
    x = _clustered(20_000, 100, seed=3)
    one = kmeans.CellIndex(c, 32, 4, threads=1)
    many = kmeans.CellIndex.__new__(kmeans.CellIndex)
    many.__dict__.update(one.__dict__, threads=3)  # the same cells, searched in parts on 3 threads
    blas_before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    s1, i1 = one.search(x)
    s3, i3 = many.search(x)
    np.testing.assert_array_equal(i1, i3)
    np.testing.assert_array_equal(s1, s3)
    assert (i1 >= 0).all() and (i1 < len(c)).all()
    # the one-BLAS-thread limit held during the search is lifted after it
    assert [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] == blas_before


def test_assignment_falls_back_when_the_index_finds_nothing():
    x = _clustered(100, 5)
    c = kmeans.train_centroids(x, 8, niter=3)

    class Empty:  # an approximate index whose probed cells were all empty
        def search(self, block, k):
            return np.zeros((len(block), k), np.float32), -np.ones((len(block), k), np.int64)

    np.testing.assert_array_equal(kmeans.assign_centroids(x, c, index=Empty()), np.argmax(x @ c.T, axis=1))


@pytest.mark.parametrize("k", [1 << 10, 1 << 15, 1 << 16])
def test_coarse_cells_near_sqrt_k(k):
    cells = kmeans.coarse_cells(k)
    assert cells & (cells - 1) == 0 and cells * cells / 2 <= k <= 2 * cells * cells


class _Killed(Exception):
    pass


def test_two_level_training_resumes_from_its_checkpoint(monkeypatch, tmp_path):
    x = _clustered(6_000, 80)
    monkeypatch.setattr(kmeans, "FLAT_MAX_CENTROIDS", 16)  # 128 centroids: 8 coarse cells + 4 Lloyd steps
    plain = kmeans.train_centroids(x, 128, niter=5)
    ck = tmp_path / "ck"

    def die_after(name, n):
        """kmeans.<name> raises (a kill) from its (n + 1)-th call on."""
        real, calls = getattr(kmeans, name), [0]

        def wrapper(*a, **kw):
            calls[0] += 1
            if calls[0] > n:
                raise _Killed
            return real(*a, **kw)

        monkeypatch.setattr(kmeans, name, wrapper)
        return real

    def saved():
        return {f.name: f.stat().st_mtime_ns for f in ck.glob("*.npy")}

    real_kmeans = die_after("_kmeans", 4)  # the coarse level and 3 cells, then killed
    with pytest.raises(_Killed):
        kmeans.train_centroids(x, 128, niter=5, checkpoint=ck)
    first = saved()
    assert len([f for f in first if f.startswith("cell-")]) == 3 and "coarse.npy" in first
    monkeypatch.setattr(kmeans, "_kmeans", real_kmeans)
    real_lloyd = die_after("_lloyd_step", 2)  # resumed, then killed again after two Lloyd steps
    with pytest.raises(_Killed):
        kmeans.train_centroids(x, 128, niter=5, checkpoint=ck)
    second = saved()
    assert {f: second[f] for f in first} == first  # no saved step was computed again
    assert {"lloyd-0.npy", "lloyd-1.npy"} <= set(second) and "lloyd-2.npy" not in second
    monkeypatch.setattr(kmeans, "_lloyd_step", real_lloyd)
    resumed = kmeans.train_centroids(x, 128, niter=5, checkpoint=ck)
    third = saved()
    assert {f: third[f] for f in second} == second and len(third) == len(second) + kmeans.REFINE_ITERS - 2
    np.testing.assert_allclose(resumed, plain, atol=1e-5)  # the centroids of one uninterrupted run
    # another sample never picks up these steps
    other = kmeans.train_centroids(_clustered(6_000, 80, seed=1), 128, niter=5, checkpoint=ck)
    assert saved()["coarse.npy"] != third["coarse.npy"] and not np.allclose(other, plain, atol=1e-3)


def test_default_threads_follow_omp_num_threads(monkeypatch):
    from maxsim.parallel import usable_cpus

    c = _clustered(256, 10)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = usable_cpus()
    assert kmeans.CellIndex(c, 4, 2).threads == min(cores, kmeans.MAX_ASSIGN_THREADS)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert usable_cpus() == 1 and kmeans.CellIndex(c, 4, 2).threads == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")  # ignored, as OpenMP runtimes do
    assert usable_cpus() == cores


def test_top_columns_picks_what_a_full_sort_picks():
    rng = np.random.default_rng(4)
    scores = rng.normal(size=(500, 64)).astype(np.float32)
    want = np.sort(np.argsort(-scores, axis=1)[:, :4], axis=1)
    assert np.array_equal(np.sort(kmeans._top_columns(scores.copy(), 4), axis=1), want)
