# mypy: disable-error-code="attr-defined"
# (a mixin of maxsim.index.Index: the attributes it uses are the index's own)
"""Search settings chosen for a recall target: ``index.tune(target_recall=0.95, queries=...)``.

The defaults of :class:`maxsim.index.SearchConfig` were measured on a few collections; another
collection can need more probes or candidates. :meth:`TunedSearch.tune` measures, on sample
queries, recall@k against exact MaxSim over every stored vector (the most the compressed index
can give) and latency, and walks a ladder of settings greedily: from the cheapest, it raises
whichever of ``nprobe``, ``n_candidates``, ``n_exact`` buys the most recall per millisecond
until the target is reached, then lowers any of them that the target does not need. The result
is stored in the catalog (state ``search_settings``; ``n_candidates`` and ``n_exact`` as
multiples of k) and used by every later search that passes no ``config``, in any process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from maxsim.errors import InvalidArgumentError
from maxsim.index.search import SearchConfig

#: Levels tried per setting; candidates and exact re-ranks are multiples of k.
NPROBE_LEVELS = (1, 2, 4, 8, 16, 32)
CANDIDATES_PER_K = (8, 16, 32, 64, 128, 256, 512)
EXACT_PER_K = (2, 3, 4, 6, 8, 12, 16, 32)
STATE_KEY = "search_settings"


@dataclass(frozen=True)
class TunedSettings:
    """What :meth:`TunedSearch.tune` found and stored."""

    nprobe: int
    candidates_per_k: int
    exact_per_k: int
    k: int
    target_recall: float
    recall: float
    p50_ms: float
    reached: bool
    n_queries: int
    trials: int

    def config(self, k: int, threads: int = 1) -> SearchConfig:
        return SearchConfig(
            nprobe=self.nprobe, n_candidates=self.candidates_per_k * k, n_exact=self.exact_per_k * k, threads=threads
        )


class TunedSearch:
    """Mixin of :class:`maxsim.index.Index`: :meth:`tune` and the stored :meth:`search_settings`."""

    def search_settings(self) -> TunedSettings | None:
        """The settings stored by :meth:`tune`, or None (the defaults of SearchConfig apply)."""
        rows = self._catalog.query("SELECT value FROM state WHERE key = ?", (STATE_KEY,))
        if not rows or not rows[0][0]:
            return None
        return TunedSettings(**json.loads(rows[0][0]))

    def default_search_config(self, k: int) -> SearchConfig:
        """The config a search without ``config`` uses: the tuned settings, else SearchConfig()."""
        tuned = self.search_settings()
        return SearchConfig() if tuned is None else tuned.config(k)

    def tune(
        self,
        queries: Sequence[np.ndarray],
        target_recall: float = 0.95,
        k: int = 10,
        threads: int = 1,
        store: bool = True,
    ) -> TunedSettings:
        """Find the fastest settings reaching ``target_recall`` (recall@k against exact MaxSim over
        the stored vectors) on ``queries`` (token vectors, e.g. 50-200 typical queries), and store
        them as this index's defaults unless ``store=False``. When no setting on the ladder
        reaches the target, the best recall found is stored with ``reached=False``."""
        if not 0.0 < float(target_recall) <= 1.0:
            raise InvalidArgumentError(f"target_recall must be in (0, 1], got {target_recall!r}")
        qs = list(queries) if not (isinstance(queries, np.ndarray) and queries.ndim == 2) else [queries]
        if not qs:
            raise InvalidArgumentError("tune: give at least one sample query")
        truth = [
            {h["id"] for h in hits}
            for hits in self.search_embeddings(qs, k=k, config=SearchConfig(exact=True, threads=threads))
        ]
        if not any(truth):
            raise InvalidArgumentError("tune: the index is empty")
        measured: dict[tuple[int, int, int], tuple[float, float]] = {}

        def measure(levels: tuple[int, int, int]) -> tuple[float, float]:
            if levels not in measured:
                cfg = SearchConfig(
                    nprobe=NPROBE_LEVELS[levels[0]],
                    n_candidates=CANDIDATES_PER_K[levels[1]] * k,
                    n_exact=EXACT_PER_K[levels[2]] * k,
                    exact=False,
                    threads=threads,
                )
                times, recalls = [], []
                for q, want in zip(qs, truth, strict=True):
                    t0 = time.perf_counter()
                    hits = self.search_embeddings([q], k=k, config=cfg)[0]
                    times.append(time.perf_counter() - t0)
                    recalls.append(len({h["id"] for h in hits} & want) / max(1, len(want)))
                measured[levels] = (float(np.mean(recalls)), 1000 * float(np.median(times)))
            return measured[levels]

        tops = (len(NPROBE_LEVELS) - 1, len(CANDIDATES_PER_K) - 1, len(EXACT_PER_K) - 1)
        cur = (1, 1, 1)
        rec, ms = measure(cur)
        while rec < target_recall:  # climb: the step with the most recall per extra millisecond
            steps = [_step(cur, i, +1) for i in range(3) if cur[i] < tops[i]]
            if not steps:
                break
            scored = [(s, *measure(s)) for s in steps]
            best = max(scored, key=lambda t: ((t[1] - rec) / max(t[2] - ms, 0.05), t[1]))
            if best[1] <= rec:  # no single step helps: take the one with the most recall anyway
                best = max(scored, key=lambda t: (t[1], -t[2]))
            cur, rec, ms = best
        if rec >= target_recall:  # descend: drop what the target does not need
            improved = True
            while improved:
                improved = False
                for i in range(3):
                    if cur[i] == 0:
                        continue
                    s = _step(cur, i, -1)
                    r, m = measure(s)
                    if r >= target_recall and m <= ms:
                        cur, rec, ms, improved = s, r, m, True
        else:  # not reached: keep the best recall seen (fastest among equals)
            cur = max(measured, key=lambda s: (measured[s][0], -measured[s][1]))
            rec, ms = measured[cur]
        result = TunedSettings(
            nprobe=NPROBE_LEVELS[cur[0]],
            candidates_per_k=CANDIDATES_PER_K[cur[1]],
            exact_per_k=EXACT_PER_K[cur[2]],
            k=k,
            target_recall=float(target_recall),
            recall=round(rec, 4),
            p50_ms=round(ms, 3),
            reached=rec >= target_recall,
            n_queries=len(qs),
            trials=len(measured),
        )
        if store:
            self._store_settings(result)
        return result

    def clear_search_settings(self) -> None:
        """Forget the tuned settings (searches use SearchConfig's defaults again)."""
        self._store_settings(None)

    def _store_settings(self, settings: TunedSettings | None) -> None:
        from maxsim.index.catalog import Catalog

        value: Any = None if settings is None else json.dumps(asdict(settings))
        with self._write_mutex:
            self._acquire_writer()
            with self._catalog.transaction() as conn:
                Catalog.set_state(conn, **{STATE_KEY: value})


def _step(levels: tuple[int, int, int], which: int, by: int) -> tuple[int, int, int]:
    """``levels`` with level ``which`` moved ``by`` steps."""
    a, b, c = (v + by if j == which else v for j, v in enumerate(levels))
    return a, b, c
