"""Reliability benchmark of the index: SIGKILL a writer again and again while readers search.

    python bench/reliability.py                      # 200 cycles, 2 reader processes
    python bench/reliability.py --cycles 20 --readers 1 --out /tmp/rel.json
    python bench/reliability.py --resume             # continue an interrupted run

One cycle: a writer process opens the index and adds batches of documents, re-writes "stable"
documents with the same vectors and new metadata, deletes earlier batches and now and then
optimizes, acknowledging each write on stdout after it returned; after a random delay it is
killed with SIGKILL. The index is then reopened and checked against the acknowledged writes.
Meanwhile reader processes (started once, kept open across cycles) search for stable documents
by their own token vectors, with and without a metadata filter, and count torn reads.

Reported (all must be 0): lost acknowledged writes (an acknowledged add missing, an acknowledged
delete present, a stable document missing), phantom documents (ids never written, or part of a
write that was not all-or-nothing), torn reads (a search for a stable document that misses it
or returns fewer than k hits: every search has at least 60 matching documents), reader errors,
failed opens and failed verify() calls after a kill. State is checkpointed after every cycle in
the work directory, so --resume continues an interrupted run. Results: a table on stdout and
bench/results/reliability.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DIM = 64
K = 10
N_STABLE = 60
#: Above this many documents the writer deletes a whole earlier batch per step (bounds the index).
MAX_DOCS = 1500


def vectors(doc_id: str) -> np.ndarray:
    """Token vectors of a document: a pure function of its id."""
    rng = np.random.default_rng(zlib.crc32(doc_id.encode()))
    x = rng.normal(size=(int(rng.integers(8, 25)), DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def stable_ids() -> list[str]:
    return [f"stable-{i}" for i in range(N_STABLE)]


# ---- child roles ------------------------------------------------------------------------------


def run_writer(out: Connection, path: str, cycle: int, deletable: list[list[str]]) -> None:
    """The writer of one cycle (a forkserver child, so it starts without re-importing maxsim);
    ``deletable``: acknowledged batches, oldest first. Acknowledgements go through ``out`` (a
    pipe: a message sent before the kill is still read by the parent after it)."""
    from maxsim.index import Index

    def print(line: str, flush: bool = True) -> None:  # noqa: A001 - same protocol as a stdout writer
        out.send(line)

    rng = random.Random(cycle)
    index = Index.open(path)
    print("READY", flush=True)
    step = 0
    while True:
        batch = [f"c{cycle}-s{step}-{j}" for j in range(rng.randint(1, 20))]
        print("BEGIN ADD " + ",".join(batch), flush=True)
        index.add_embeddings(
            [vectors(x) for x in batch], ids=batch, metadata=[{"stable": 0, "cycle": cycle}] * len(batch)
        )
        print("ACK ADD " + ",".join(batch), flush=True)
        deletable.append(batch)
        ids = rng.sample(stable_ids(), rng.randint(1, 3))
        print("BEGIN UPD " + ",".join(ids), flush=True)
        index.update_embeddings(ids, [vectors(x) for x in ids], metadata=[{"stable": 1, "rev": step}] * len(ids))
        print("ACK UPD " + ",".join(ids), flush=True)
        if len(deletable) > 1 and (step % 2 == 1 or len(index) > MAX_DOCS):
            victim = deletable.pop(0)
            print("BEGIN DEL " + ",".join(victim), flush=True)
            index.delete(victim)
            print("ACK DEL " + ",".join(victim), flush=True)
        if step % 7 == 6:
            print("BEGIN OPT -", flush=True)
            index.optimize(force=step % 14 == 13)
            print("ACK OPT -", flush=True)
        step += 1


def run_reader(path: str, seed: int, stats_file: str) -> None:
    from maxsim.index import Index, SearchConfig

    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    rng = random.Random(seed)
    stats = {"searches": 0, "torn_reads": 0, "errors": 0, "examples": []}
    index = Index.open(path, readonly=True)
    exact = SearchConfig(exact=True)
    last_dump = 0.0
    while not stop:
        target = rng.choice(stable_ids())
        flt = {"stable": 1} if stats["searches"] % 2 else None
        try:
            hits = index.search_embeddings(vectors(target)[:6], k=K, filter=flt, config=exact)[0]
        except Exception as e:  # noqa: BLE001 - every failure is counted and reported
            stats["errors"] += 1
            if len(stats["examples"]) < 5:
                stats["examples"].append(f"{type(e).__name__}: {e}")
        else:
            got = [h["id"] for h in hits]
            if len(got) < K or target not in got:
                stats["torn_reads"] += 1
                if len(stats["examples"]) < 5:
                    stats["examples"].append(f"torn: {target} filter={flt} got {len(got)} hits")
        stats["searches"] += 1
        if time.monotonic() - last_dump > 1.0 or stop:
            _dump(stats_file, stats)
            last_dump = time.monotonic()
        time.sleep(0.005)
    _dump(stats_file, stats)


def _dump(path: str, obj: dict) -> None:
    tmp = f"{path}.tmp"
    Path(tmp).write_text(json.dumps(obj))
    os.replace(tmp, path)


# ---- the driver -------------------------------------------------------------------------------


def _child(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def _seed(path: Path) -> None:
    from maxsim.index import Index

    with Index.create(path, dim=DIM) as index:
        index.add_embeddings(
            [vectors(x) for x in stable_ids()], ids=stable_ids(), metadata=[{"stable": 1, "rev": -1}] * N_STABLE
        )


def _kill_cycle(path: Path, cycle: int, state: dict, stretch: float) -> list[str]:
    ctx = mp.get_context("forkserver")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=run_writer, args=(send, str(path), cycle, state["batches"]), daemon=True)
    proc.start()
    send.close()
    if not receive.poll(300) or receive.recv() != "READY":
        proc.kill()
        proc.join()
        state["failed_opens"] += 1
        state["examples"].append(f"cycle {cycle}: the writer could not open the index (exit {proc.exitcode})")
        return []
    time.sleep(stretch * random.Random(cycle).uniform(0.1, 2.0))
    proc.kill()
    proc.join()
    lines = []
    while True:
        try:
            lines.append(receive.recv())
        except EOFError:
            break
    receive.close()
    if proc.exitcode != -signal.SIGKILL:
        state["examples"].append(f"cycle {cycle}: writer exited by itself ({proc.exitcode})")
    return lines


def _check(path: Path, cycle: int, lines: list[str], state: dict) -> None:
    """Apply the acknowledged writes to the expected state, resolve the write in flight from the
    index, and count every disagreement."""
    from maxsim.index import Index

    present: set[str] = set(state["present"])
    in_flight: tuple[str, list[str]] | None = None
    for line in lines:
        kind, op, arg = line.split(" ", 2)
        ids = [] if arg == "-" else arg.split(",")
        if kind == "BEGIN":
            in_flight = (op, ids)
            if op == "ADD":  # until acknowledged it may or may not land: never a phantom
                state["unacknowledged"] = sorted(set(state["unacknowledged"]) | set(ids))
            continue
        in_flight = None
        state["acked_ops"] += 1
        if op == "ADD":
            present |= set(ids)
            state["batches"].append(ids)
        elif op == "DEL":
            present -= set(ids)
            state["batches"] = [b for b in state["batches"] if b != ids]
    try:
        index = Index.open(path)
    except Exception as e:  # noqa: BLE001
        state["failed_opens"] += 1
        state["examples"].append(f"cycle {cycle}: open failed: {type(e).__name__}: {e}")
        return
    with index:
        try:
            index.verify()
        except Exception as e:  # noqa: BLE001
            state["verify_failures"] += 1
            state["examples"].append(f"cycle {cycle}: verify failed: {type(e).__name__}: {e}")
        held = {r[0] for r in index._catalog.query("SELECT id FROM docs")}
    if in_flight is not None and in_flight[0] in ("ADD", "DEL"):
        op, ids = in_flight
        got = [x in held for x in ids]
        if all(got) and op == "ADD":
            present |= set(ids)
            state["batches"].append(ids)
        elif not any(got) and op == "DEL":
            present -= set(ids)
            state["batches"] = [b for b in state["batches"] if b != ids]
        elif any(got) and not all(got):
            state["phantom_documents"] += sum(got) if op == "ADD" else len(ids) - sum(got)
            state["examples"].append(f"cycle {cycle}: partial {op} of {ids}")
            present = (present | set(ids)) if op == "ADD" else present
    lost = (present | set(stable_ids())) - held
    unexplained = held - present - set(stable_ids())
    late = unexplained & set(state["unacknowledged"])  # an earlier cycle's unacknowledged add seen only now
    phantom = unexplained - late
    if lost:
        state["lost_acknowledged_writes"] += len(lost)
        state["examples"].append(f"cycle {cycle}: lost {sorted(lost)[:5]}")
    if phantom:
        state["phantom_documents"] += len(phantom)
        state["examples"].append(f"cycle {cycle}: phantom {sorted(phantom)[:5]}")
    if late:
        state["late_unacknowledged_writes"] += len(late)
        state["examples"].append(f"cycle {cycle}: unacknowledged add of an earlier cycle appeared {sorted(late)[:3]}")
        state["batches"].append(sorted(late))
    # from now on the index's contents are the expectation (each surprise is counted once)
    state["present"] = sorted(held)
    acked_or_held = set(held)
    state["unacknowledged"] = sorted(set(state["unacknowledged"]) - acked_or_held)


def _reader_totals(work: Path, n: int) -> dict:
    tot = {"searches": 0, "torn_reads": 0, "errors": 0, "examples": []}
    for r in range(n):
        f = work / f"reader-{r}.json"
        if f.exists():
            s = json.loads(f.read_text())
            for key in ("searches", "torn_reads", "errors"):
                tot[key] += s[key]
            tot["examples"] += s["examples"]
    return tot


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--readers", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "maxsim-reliability")
    ap.add_argument("--out", type=Path, default=RESULTS / "reliability.json")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--role", choices=["reader"], help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--stats", help=argparse.SUPPRESS)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup below (stop the readers)
    if args.role == "reader":
        return run_reader(args.path, args.seed, args.stats)

    work, path = args.work, args.work / "index"
    state_file = work / "state.json"
    if args.resume and state_file.exists():
        state = json.loads(state_file.read_text())
    else:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        _seed(path)
        state = {
            "cycle": 0,
            "present": stable_ids(),
            "batches": [],
            "acked_ops": 0,
            "lost_acknowledged_writes": 0,
            "phantom_documents": 0,
            "late_unacknowledged_writes": 0,
            "unacknowledged": [],
            "failed_opens": 0,
            "verify_failures": 0,
            "writer_seconds": 0.0,
            "examples": [],
            "reader_base": {"searches": 0, "torn_reads": 0, "errors": 0},
        }
    # reader stats files restart at zero in a resumed run: fold the earlier totals in
    earlier = _reader_totals(work, args.readers)
    for key in ("searches", "torn_reads", "errors"):
        state["reader_base"][key] += earlier[key]
    for r in range(args.readers):
        (work / f"reader-{r}.json").unlink(missing_ok=True)
    readers = [
        subprocess.Popen(
            _child(
                "--role", "reader", "--path", str(path), "--seed", str(r), "--stats", str(work / f"reader-{r}.json")
            ),
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(args.readers)
    ]
    state.setdefault(
        "commit",
        subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
    )  # the code under test
    mp.set_forkserver_preload(["maxsim.index", "numpy"])
    stretch = 1.0
    started = time.time()
    try:
        for cycle in tqdm(range(state["cycle"], args.cycles), initial=state["cycle"], total=args.cycles, desc="cycles"):
            t0 = time.time()
            lines = _kill_cycle(path, cycle, state, stretch)
            state["writer_seconds"] += time.time() - t0
            stretch = min(stretch * 2, 8.0) if not [x for x in lines if x.startswith("ACK")] else 1.0
            _check(path, cycle, lines, state)
            state["cycle"] = cycle + 1
            state["examples"] = state["examples"][-20:]
            _dump(str(state_file), state)
    finally:
        for p in readers:
            p.send_signal(signal.SIGTERM)
        for p in readers:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
    totals = _reader_totals(work, args.readers)
    for key in ("searches", "torn_reads", "errors"):
        totals[key] += state["reader_base"][key]
    result = {
        "cycles": state["cycle"],
        "acknowledged_writes": state["acked_ops"],
        "lost_acknowledged_writes": state["lost_acknowledged_writes"],
        "phantom_documents": state["phantom_documents"],
        "late_unacknowledged_writes": state["late_unacknowledged_writes"],
        "torn_reads": totals["torn_reads"],
        "reader_searches": totals["searches"],
        "reader_errors": totals["errors"],
        "failed_opens": state["failed_opens"],
        "verify_failures": state["verify_failures"],
        "readers": args.readers,
        "documents_at_end": len(state["present"]),
        "seconds_this_run": round(time.time() - started, 1),
        "commit": state.get("commit"),
        "examples": state["examples"] + totals["examples"],
    }
    result["ok"] = all(
        result[k] == 0
        for k in (
            "lost_acknowledged_writes",
            "phantom_documents",
            "torn_reads",
            "reader_errors",
            "failed_opens",
            "verify_failures",
        )
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    width = max(len(k) for k in result)
    for key, value in result.items():
        if key != "examples":
            print(f"{key:<{width}}  {value}")
    for ex in result["examples"][:10]:
        print("  ", ex)


if __name__ == "__main__":
    main()
