"""Evaluation reports: markdown tables and matplotlib PNG plots from a results JSON."""

from __future__ import annotations

from pathlib import Path

METRIC_NAMES = {"ndcg@10": "nDCG@10", "mrr@10": "MRR@10", "recall@100": "R@100"}
HALF_LABELS = {"monolingual": "monolingual", "cross_lingual": "cross-lingual"}


def _lang(c: dict) -> str:
    """``es`` for a monolingual collection, ``es>en`` for questions in es on passages in en."""
    q = c.get("query_language")
    return f"{q}>{c['language']}" if c.get("cross_lingual") and q else c["language"]


def halves_table(data: dict, metric: str = "ndcg@10") -> str:
    """Monolingual and cross-lingual averages side by side, with each dim's loss against the widest."""
    systems = _systems(data)
    halves = data.get("halves") or {}
    lines = ["| half | queries | " + " | ".join(systems) + " |", "|" + "---|" * (2 + len(systems))]
    for half, label in HALF_LABELS.items():
        if half in halves:
            avg = halves[half]["average"]
            cells = [f"{100 * avg[s][metric]:.1f}" if s in avg else "" for s in systems]
            lines.append(f"| {label} | {halves[half]['n_queries']} | " + " | ".join(cells) + " |")
    dims = sorted((int(s.split("-")[1]) for s in systems if s.startswith("colbert-")), reverse=True)
    if len(dims) > 1:
        lines.append("")
        for half, label in HALF_LABELS.items():
            avg = halves.get(half, {}).get("average", {})
            if all(f"colbert-{d}" in avg for d in dims):
                top = avg[f"colbert-{dims[0]}"][metric]
                rel = ", ".join(f"{d}: {100 * (avg[f'colbert-{d}'][metric] / top - 1):+.1f} %" for d in dims[1:])
                lines.append(f"- {label}: against {dims[0]} dims, {rel}")
    return "\n".join(lines)


def _systems(data: dict) -> list[str]:
    seen: list[str] = []
    for c in data["collections"]:
        for s in c["metrics"]:
            if s not in seen:
                seen.append(s)
    order = {"bm25": 0, "dense": 1}
    return sorted(seen, key=lambda s: (order.get(s, 2), -int(s.split("-")[-1]) if s.startswith("colbert-") else 0))


def markdown_table(data: dict, metric: str = "ndcg@10") -> str:
    """Collections as rows (plus the average), systems as columns; values x100, best in bold."""
    systems = _systems(data)
    name = METRIC_NAMES.get(metric, metric)
    head = "| collection | lang | queries | docs | " + " | ".join(f"{s} {name}" for s in systems) + " |"
    lines = [head, "|" + "---|" * (4 + len(systems))]

    def row(label: str, lang: str, nq: str, nd: str, values: dict) -> str:
        nums = [values.get(s, {}).get(metric) for s in systems]
        best = max((v for v in nums if v is not None), default=None)
        cells = []
        for v in nums:
            if v is None:
                cells.append("")
            else:
                text = f"{100 * v:.1f}"
                cells.append(f"**{text}**" if best is not None and abs(v - best) < 1e-12 else text)
        return f"| {label} | {lang} | {nq} | {nd} | " + " | ".join(cells) + " |"

    halves = data.get("halves") or {}
    if len(halves) < 2:  # one kind of collection: one list, one average
        for c in data["collections"]:
            lines.append(row(c["name"], _lang(c), str(c["n_queries"]), str(c["n_docs"]), c["metrics"]))
    else:  # monolingual, then cross-lingual collections, each with its own average
        for half, label in HALF_LABELS.items():
            members = [c for c in data["collections"] if bool(c.get("cross_lingual")) == (half == "cross_lingual")]
            for c in members:
                lines.append(row(c["name"], _lang(c), str(c["n_queries"]), str(c["n_docs"]), c["metrics"]))
            lines.append(row(f"**average, {label}**", "", str(halves[half]["n_queries"]), "", halves[half]["average"]))
    lines.append(row("**average**", "", str(sum(c["n_queries"] for c in data["collections"])), "", data["average"]))
    return "\n".join(lines)


def language_table(data: dict, metric: str = "ndcg@10") -> str:
    systems = _systems(data)
    lines = ["| lang | " + " | ".join(systems) + " |", "|" + "---|" * (1 + len(systems))]
    for lang, values in data["by_language"].items():
        cells = [f"{100 * values[s][metric]:.1f}" if s in values else "" for s in systems]
        lines.append(f"| {lang} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_report(data: dict) -> str:
    parts = ["# Retrieval evaluation", ""]
    cfg = data.get("config", {})
    if data.get("description"):
        parts += [data["description"], ""]
    sample = data.get("sample")
    if sample:
        parts += [
            f"Sampled: at most {sample.get('max_queries')} queries and {sample.get('max_docs')} documents per collection (seed {sample.get('seed')}); judged documents of sampled queries are always kept.",
            "",
        ]
    parts += [
        f"Model: `{data.get('model', '?')}`; dims {cfg.get('dims')}; top-{cfg.get('k')} runs; metrics by ranx; values x100.",
        "",
    ]
    if len(data.get("halves") or {}) > 1:
        parts += ["## nDCG@10, monolingual and cross-lingual apart", "", halves_table(data), ""]
    for metric in cfg.get("metrics", ["ndcg@10"]):
        parts += [f"## {METRIC_NAMES.get(metric, metric)}", "", markdown_table(data, metric), ""]
    parts += ["## nDCG@10 by language (mean over collections)", "", language_table(data), ""]
    if data.get("seconds"):
        parts += [f"Wall time: {data['seconds']:.0f} s.", ""]
    return "\n".join(parts)


def plot_collections(data: dict, path: Path, metric: str = "ndcg@10") -> Path:
    """Grouped bars: one group per collection (plus the average), one bar per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    systems = _systems(data)
    labels = [c["name"] for c in data["collections"]] + ["average"]
    values = [
        [c["metrics"].get(s, {}).get(metric, np.nan) for c in data["collections"]]
        + [data["average"].get(s, {}).get(metric, np.nan)]
        for s in systems
    ]
    x = np.arange(len(labels))
    width = 0.8 / max(len(systems), 1)
    fig, ax = plt.subplots(figsize=(max(8, 0.75 * len(labels) + 2), 4.5))
    for i, (s, vals) in enumerate(zip(systems, values)):
        ax.bar(x + (i - (len(systems) - 1) / 2) * width, 100 * np.asarray(vals, float), width, label=s)
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(METRIC_NAMES.get(metric, metric))
    finite = [100 * v for vals in values for v in vals if v == v]
    low = max(0.0, (min(finite) // 10) * 10 - 10) if finite else 0.0  # start near the data so gaps show
    ax.set_ylim(low, 100)
    ax.legend(fontsize=8, ncol=len(systems), loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False)
    ax.set_title(f"{METRIC_NAMES.get(metric, metric)} per collection (y axis starts at {low:.0f})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_dims(data: dict, path: Path, metric: str = "ndcg@10") -> Path:
    """Average quality of the late-interaction model against dim, with the baselines as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    avg = data["average"]
    halves = data.get("halves") or {}
    groups = (
        {HALF_LABELS[h]: halves[h]["average"] for h in HALF_LABELS if h in halves}
        if len(halves) > 1
        else {"average": avg}
    )
    dims = sorted(int(s.split("-")[1]) for s in avg if s.startswith("colbert-"))
    fig, ax = plt.subplots(figsize=(6, 4))
    colours = ["C0", "C3"]
    if dims:
        for c in data["collections"]:
            ys = [c["metrics"].get(f"colbert-{d}", {}).get(metric) for d in dims]
            if None not in ys:
                ax.plot(dims, [100 * y for y in ys], "-", color="grey", alpha=0.25, linewidth=0.8)
        for (label, values), colour in zip(groups.items(), colours):
            ax.plot(
                dims,
                [100 * values[f"colbert-{d}"][metric] for d in dims],
                "o-",
                color=colour,
                label=f"late interaction ({label})",
            )
        ax.set_xticks(dims)
    for (label, values), colour in zip(groups.items(), colours):
        for s, style in (("bm25", "--"), ("dense", ":")):
            if s in values:
                ax.axhline(100 * values[s][metric], linestyle=style, color=colour, label=f"{s} ({label})")
    ax.set_xlabel("dim")
    ax.set_ylabel(METRIC_NAMES.get(metric, metric))
    ax.set_title(f"{METRIC_NAMES.get(metric, metric)} against dim (grey: single collections)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(data: dict, out: Path) -> dict[str, Path]:
    """results.json, results.md, per-collection bars and quality-vs-dim plots under ``out``."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "markdown": out / "results.md"}
    paths["json"].write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    paths["markdown"].write_text(markdown_report(data), encoding="utf-8")
    paths["collections_plot"] = plot_collections(data, out / "ndcg_per_collection.png")
    if any(s.startswith("colbert-") for s in data["average"]):
        paths["dims_plot"] = plot_dims(data, out / "ndcg_vs_dim.png")
    return paths
