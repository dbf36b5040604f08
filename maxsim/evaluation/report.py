"""Evaluation reports: markdown tables and matplotlib PNG plots from a results JSON."""

from __future__ import annotations

from pathlib import Path

METRIC_NAMES = {"ndcg@10": "nDCG@10", "mrr@10": "MRR@10", "recall@100": "R@100"}


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
    head = f"| collection | lang | queries | docs | " + " | ".join(f"{s} {name}" for s in systems) + " |"
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

    for c in data["collections"]:
        lines.append(row(c["name"], c["language"], str(c["n_queries"]), str(c["n_docs"]), c["metrics"]))
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
        parts += [f"Sampled: at most {sample.get('max_queries')} queries and {sample.get('max_docs')} documents per collection (seed {sample.get('seed')}); judged documents of sampled queries are always kept.", ""]
    parts += [f"Model: `{data.get('model', '?')}`; dims {cfg.get('dims')}; top-{cfg.get('k')} runs; metrics by ranx; values x100.", ""]
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
    values = [[c["metrics"].get(s, {}).get(metric, np.nan) for c in data["collections"]] + [data["average"].get(s, {}).get(metric, np.nan)] for s in systems]
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
    dims = sorted(int(s.split("-")[1]) for s in avg if s.startswith("colbert-"))
    fig, ax = plt.subplots(figsize=(6, 4))
    if dims:
        ax.plot(dims, [100 * avg[f"colbert-{d}"][metric] for d in dims], "o-", label="late interaction (average)")
        for c in data["collections"]:
            ys = [c["metrics"].get(f"colbert-{d}", {}).get(metric) for d in dims]
            if None not in ys:
                ax.plot(dims, [100 * y for y in ys], "-", color="grey", alpha=0.25, linewidth=0.8)
        ax.set_xticks(dims)
    for s, style in (("bm25", "--"), ("dense", ":")):
        if s in avg:
            ax.axhline(100 * avg[s][metric], linestyle=style, color="black", label=f"{s} (average)")
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
