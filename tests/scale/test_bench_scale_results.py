"""bench/scale.py's stored results: a run adds its records without dropping ones it did not redo."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_scale", ROOT / "bench" / "scale.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write(path: Path, rec: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))


def test_a_run_of_one_system_keeps_the_other_systems_stored_records(tmp_path):
    scale = load_bench()
    work = tmp_path / "work"
    # this run: one machine rebuilt at 100k; one machine and Ray at 1M
    write(work / "100000" / "build-4bit.json", {"done": True, "build_s": 348})
    write(work / "100000" / "search-single-4bit.json", {"done": True, "wide": {"p50_ms": 16}})
    write(work / "1000000" / "build-4bit.json", {"done": True, "build_s": 2150})
    write(work / "1000000" / "ray-build-4bit.json", {"done": True, "build_s": 3000})
    write(work / "1000000" / "search-ray-4bit.json", {"done": True})
    write(work / "1000000" / "search-single-4bit.json", {"build_s": 1})  # not finished: not taken
    stored = {
        "sizes": {
            "100000": {
                "build": {"build_s": 422},
                "search": {"wide": {"p50_ms": 17}},
                "diagnose": {"old": True},
                "ray_build": {"build_s": 421},
                "ray_search": {"wide": {"p50_ms": 23}},
            },
            "300000": {"build": {"build_s": 960}},
            "1000000": {"build": {"build_s": 5377}, "search": {"old": True}},
        },
        "encode": {"done": True},
    }
    res = scale.keep_stored_rows(stored, scale.gather(work, [100000, 1000000], "4"))
    rows = res["sizes"]
    assert list(rows) == ["100000", "300000", "1000000"]
    # one machine at 100k comes from this run whole: its old search and diagnosis belonged to the old build
    assert rows["100000"]["build"]["build_s"] == 348 and rows["100000"]["search"]["wide"]["p50_ms"] == 16
    assert "diagnose" not in rows["100000"]
    # Ray at 100k was not redone: its stored records stay
    assert rows["100000"]["ray_build"]["build_s"] == 421 and rows["100000"]["ray_search"]["wide"]["p50_ms"] == 23
    assert rows["300000"] == {"build": {"build_s": 960}}
    # at 1M both systems were redone; the stored one-machine search went with its build
    assert rows["1000000"]["build"]["build_s"] == 2150 and "search" not in rows["1000000"]
    assert rows["1000000"]["ray_build"]["build_s"] == 3000
    assert rows["1000000"]["build"]["finished_at"].endswith("Z")
    assert res["encode"] == {"done": True}
