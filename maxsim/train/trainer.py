"""Train a late-interaction model: a small loop with checkpoints that resume exactly.

>>> args = TrainingArguments(output_dir="runs/head", trainable="head", epochs=2)   # doctest: +SKIP
>>> Trainer(model, args, train_pairs, dev_pairs).train()                          # doctest: +SKIP

Checkpoints (``output_dir/checkpoint``) hold the trainable tensors and the optimiser state as
safetensors and the loop position as JSON; batches are a pure function of (seed, epoch), so a
resumed run takes exactly the steps an uninterrupted one would have taken.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from maxsim.errors import MaxsimError
from maxsim.train.data import Pair, batches, unique_texts
from maxsim.train.losses import ContrastiveLoss, DistillationLoss, MatryoshkaLoss

log = logging.getLogger(__name__)


class TrainingError(MaxsimError, ValueError):
    """Bad training settings or an unusable checkpoint."""


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> ``cuda`` if available, else ``mps`` if available, else ``cpu``; ``"cpu"``,
    ``"cuda"``, ``"cuda:N"`` and ``"mps"`` are checked to exist here (a :class:`TrainingError`
    naming the device otherwise)."""
    text = str(spec).strip().lower()
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps is not None and mps.is_available())
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "mps" if mps_ok else "cpu"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise TrainingError(f"device must be auto, cpu, cuda, cuda:N or mps, got {spec!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError(
                f"device {spec!r} is not available: torch.cuda.is_available() is False "
                f"(torch {torch.__version__}); use --device cpu or auto"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise TrainingError(f"device {spec!r} is not available: {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not mps_ok:
        raise TrainingError(
            f"device {spec!r} is not available: torch.backends.mps.is_available() is False; use --device cpu or auto"
        )
    elif device.type == "cpu" and device.index not in (None, 0):
        raise TrainingError(f"device {spec!r} is not available: use cpu")
    # with its index, as parameters report it ("cuda" -> "cuda:0"), so devices compare equal
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    elif device.type == "mps":
        device = torch.device("mps", 0)
    elif device.type == "cpu":
        device = torch.device("cpu")
    return device


@dataclass
class TrainingArguments:
    """Every training setting. Unknown keys are an error (``from_dict``)."""

    output_dir: str
    trainable: Literal["head", "lora", "top-layers"] = "head"
    epochs: int = 1
    max_steps: int | None = None  # stop after this many optimiser steps in total
    max_seconds: float | None = None  # save and stop after this much wall time (resume later)
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    max_grad_norm: float = 1.0
    temperature: float = 1.0
    dims: tuple[int, ...] = (128, 96, 64)
    dim_weights: tuple[float, ...] | None = None
    hard_negatives: int = 1  # per pair, taken from the pair's negatives
    distill_weight: float = 0.0
    doc_maxlen: int = 180
    lora_r: int = 8
    lora_alpha: int = 16
    lora_layers: int | None = None  # LoRA in the top N layers only (lower layers run once, cached); None = all
    top_layers: int = 2
    dev_distractors: int | None = 600  # training positives per source added to the dev pool (None = all)
    bf16: bool = False  # bfloat16 autocast for the encoder layers (head and loss stay float32)
    device: str = "auto"  # auto (cuda, else mps, else cpu), cpu, cuda, cuda:N, mps
    seed: int = 0
    save_steps: int = 200
    eval_steps: int = 200
    logging_steps: int = 20
    cache_dir: str | None = None  # backbone states of a frozen backbone (trainable="head")
    init_adapter: str | None = None  # start the head and matching LoRA factors from this adapter file
    show_progress: bool = True

    def __post_init__(self) -> None:
        self.dims = tuple(int(d) for d in self.dims)
        if self.trainable not in ("head", "lora", "top-layers"):
            raise TrainingError(f"trainable must be head, lora or top-layers, got {self.trainable!r}")
        if self.batch_size < 2:
            raise TrainingError(f"batch_size must be >= 2 (in-batch negatives), got {self.batch_size}")
        if self.epochs < 1:
            raise TrainingError(f"epochs must be >= 1, got {self.epochs}")
        if self.learning_rate <= 0:
            raise TrainingError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not self.dims or any(d < 1 for d in self.dims):
            raise TrainingError(f"dims must be positive, got {self.dims}")
        if self.init_adapter is not None and not Path(self.init_adapter).is_file():
            raise TrainingError(f"init_adapter {self.init_adapter} does not exist")
        self.device = str(self.device)
        resolve_device(self.device)  # an unknown or unavailable device fails here, before any work

    @classmethod
    def from_dict(cls, data: dict) -> TrainingArguments:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainingError(f"unknown training argument(s): {unknown}")
        return cls(**data)


@dataclass
class TrainerState:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` already done
    best_metric: float | None = None
    best_step: int | None = None
    history: list[dict] = field(default_factory=list)


class Trainer:
    """Fine-tune ``model`` (a :class:`maxsim.Model`) on pairs; optional dev pairs for evaluation.

    The head trained is a copy of the model's widest head (warm start); after ``train`` the
    model serves it (``model.heads``), and ``output_dir/head.safetensors`` holds the best one.
    """

    def __init__(
        self, model, args: TrainingArguments, train_pairs: Sequence[Pair], dev_pairs: Sequence[Pair] = ()
    ) -> None:
        if not train_pairs:
            raise TrainingError("no training pairs")
        self.device = resolve_device(args.device)
        self.model = model
        self.args = args
        self.pairs = list(train_pairs)
        self.dev_pairs = list(dev_pairs)
        top = max(model.heads)
        if max(args.dims) > top:
            raise TrainingError(f"dims {args.dims} exceed the model's {top}-wide head")
        source = model.heads[top]
        self.head = nn.Linear(source.in_features, source.out_features, bias=source.bias is not None)
        self.head.load_state_dict(source.state_dict())
        self.head.requires_grad_(True)
        for p in model.encoder.parameters():
            p.requires_grad_(False)
        self._frozen_lora: tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], float] | None = None
        if args.trainable == "head" and args.init_adapter:
            # a new head on top of an adapter's LoRA factors: they are merged into the frozen
            # backbone before any state is computed (the state cache's fingerprint sees them) and
            # written back unchanged beside the trained head
            self._frozen_lora = self._merge_adapter_lora(Path(args.init_adapter))
        if args.trainable == "head":
            from maxsim.train.forward import CachedForward

            # the frozen backbone's states are computed once by the model's own (CPU) encoding path;
            # only the head moves to the device
            self.head.to(self.device)
            self.forward: nn.Module = CachedForward(model, self.head, args.doc_maxlen, args.cache_dir)
        else:
            from maxsim.train.forward import (
                EncoderForward,
                TopLayersForward,
                add_lora,
                add_lora_to_top_layers,
                unfreeze_top_layers,
            )

            # Only the top layers train: the frozen lower part runs once per text (our own encoder
            # can be run layer range by layer range; other backbones run whole each step).
            splittable = hasattr(model.encoder, "run_layers")
            if args.trainable == "lora" and args.lora_layers:
                add_lora_to_top_layers(model.encoder, args.lora_layers, args.lora_r, args.lora_alpha)
                top = args.lora_layers
            elif args.trainable == "lora":
                model.encoder = add_lora(model.encoder, args.lora_r, args.lora_alpha)
                top = None
            else:
                unfreeze_top_layers(model.encoder, args.top_layers)
                top = args.top_layers
            model.encoder.train()
            # the whole encoder goes to the device (the lower layers run there once per text too);
            # on the CPU both calls are no-ops
            model.encoder.to(self.device)
            self.head.to(self.device)
            if top is not None and splittable:
                self.forward = TopLayersForward(model, self.head, top, args.doc_maxlen, bf16=args.bf16)
            else:
                self.forward = EncoderForward(model, self.head, args.doc_maxlen, bf16=args.bf16)
        if args.init_adapter:
            self._start_from_adapter(Path(args.init_adapter))
        self.trainable = {n: p for n, p in self.forward.named_parameters() if p.requires_grad}
        self.loss = MatryoshkaLoss(
            args.dims,
            args.dim_weights,
            ContrastiveLoss(args.temperature),
            DistillationLoss(args.temperature),
            args.distill_weight,
        )
        self.optimizer = torch.optim.AdamW(
            list(self.trainable.values()), lr=args.learning_rate, weight_decay=args.weight_decay
        )
        self.steps_per_epoch = len(batches(self.pairs, args.batch_size, 0, args.seed))
        if self.steps_per_epoch == 0:
            raise TrainingError(f"{len(self.pairs)} pairs make no batch of >= 2 from one source")
        total = self.steps_per_epoch * args.epochs
        self.total_steps = min(total, args.max_steps) if args.max_steps else total
        warmup = max(1, int(args.warmup_ratio * self.total_steps))
        total_steps = self.total_steps

        def schedule(step: int) -> float:  # linear warm-up, then linear decay to 0
            return min((step + 1) / warmup, max(0.0, (total_steps - step) / max(1, total_steps - warmup)))

        self._schedule = schedule
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.state = TrainerState()
        self.out = Path(args.output_dir)

    @torch.no_grad()
    def _start_from_adapter(self, path: Path) -> None:
        """Warm start: the head, and the LoRA factors of every module the file and the run share.

        Modules adapted here but not in the file keep their fresh factors (B = 0, so they start as
        the identity); the file's factors must all find a trained module of the same rank and scale.
        """
        from maxsim.models.adapter import AdapterError, read_adapter

        try:
            head, lora, scale, _ = read_adapter(path)
        except (OSError, AdapterError) as exc:
            raise TrainingError(f"init_adapter {path}: {exc}") from None
        if head.weight.shape != self.head.weight.shape:
            raise TrainingError(
                f"init_adapter {path}: head {tuple(head.weight.shape)}, the model's is {tuple(self.head.weight.shape)}"
            )
        self.head.weight.copy_(head.weight)
        if self.head.bias is not None and head.bias is not None:
            self.head.bias.copy_(head.bias)
        if not lora or self.args.trainable == "head":  # (head: merged into the frozen backbone already)
            return
        if self.args.trainable != "lora":
            raise TrainingError(
                f"init_adapter {path} holds LoRA factors; they need trainable='lora' (or 'head', which keeps them)"
            )
        modules = dict(self.model.encoder.named_modules())
        for name, (a, b) in lora.items():
            target = modules.get(name)
            if target is None or not hasattr(target, "lora_A"):
                raise TrainingError(
                    f"init_adapter {path}: {name} carries LoRA factors but is not adapted in this run "
                    "(adapt at least as many top layers)"
                )
            own_scale = float(target.scaling["default"])
            if abs(own_scale - scale) > 1e-6 or target.lora_A["default"].weight.shape != a.shape:
                raise TrainingError(
                    f"init_adapter {path}: {name} has rank {a.shape[0]}, scale {scale}; this run uses "
                    f"rank {target.lora_A['default'].weight.shape[0]}, scale {own_scale}"
                )
            target.lora_A["default"].weight.copy_(a)
            target.lora_B["default"].weight.copy_(b)

    @torch.no_grad()
    def _merge_adapter_lora(self, path: Path) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], float] | None:
        from maxsim.models.adapter import AdapterError, merge_lora, read_adapter

        try:
            _, lora, scale, _ = read_adapter(path)
            if lora:
                merge_lora(self.model.encoder, lora, scale)
        except (OSError, AdapterError) as exc:
            raise TrainingError(f"init_adapter {path}: {exc}") from None
        return (lora, scale) if lora else None

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_dir(self) -> Path:
        return self.out / "checkpoint"

    def save_checkpoint(self) -> Path:
        tmp = self.out / "checkpoint.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        # CPU copies (``.cpu()`` is a no-op on the CPU): a checkpoint resumes on any device
        save_file(
            {n: p.detach().cpu().contiguous() for n, p in self.trainable.items()}, str(tmp / "trainable.safetensors")
        )
        opt: dict[str, torch.Tensor] = {}
        names = list(self.trainable)
        for i, p in enumerate(self.trainable.values()):
            for k, v in self.optimizer.state.get(p, {}).items():
                opt[f"{names[i]}::{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
        save_file(opt, str(tmp / "optimizer.safetensors"))
        (tmp / "state.json").write_text(json.dumps({"state": asdict(self.state), "args": asdict(self.args)}, indent=1))
        if self.checkpoint_dir.exists():
            shutil.rmtree(self.checkpoint_dir)
        os.replace(tmp, self.checkpoint_dir)  # a crash mid-save leaves the previous checkpoint whole
        return self.checkpoint_dir

    def load_checkpoint(self, path: Path | None = None) -> bool:
        """Restore the trainable tensors, optimiser and loop position; False if there is none."""
        path = path or self.checkpoint_dir
        if not (path / "state.json").is_file():
            return False
        saved = json.loads((path / "state.json").read_text())
        for key in ("trainable", "dims", "batch_size", "seed", "epochs", "max_steps"):
            if saved["args"].get(key) != asdict(self.args).get(key) and not (
                key == "dims" and list(saved["args"][key]) == list(self.args.dims)
            ):
                raise TrainingError(
                    f"checkpoint {path} was made with {key}={saved['args'].get(key)!r}, not {asdict(self.args).get(key)!r}"
                )
        tensors = load_file(str(path / "trainable.safetensors"))
        missing = set(self.trainable) - set(tensors)
        if missing:
            raise TrainingError(f"checkpoint {path} lacks trainable tensors {sorted(missing)[:3]}")
        with torch.no_grad():
            for n, p in self.trainable.items():
                p.copy_(tensors[n])
        opt = load_file(str(path / "optimizer.safetensors"))
        for n, p in self.trainable.items():
            # moments go to the parameter's device; AdamW keeps its "step" counter on the CPU
            st = {
                key: v if key == "step" else v.to(p.device)
                for key, v in ((k.split("::", 1)[1], v) for k, v in opt.items() if k.split("::", 1)[0] == n)
            }
            if st:
                self.optimizer.state[p] = st
        self.state = TrainerState(**saved["state"])
        self.scheduler.last_epoch = self.state.step
        for group in self.optimizer.param_groups:
            group["lr"] = self.args.learning_rate * self._schedule(self.state.step)
        return True

    def save_head(self, path: Path, metadata: dict | None = None) -> Path:
        """The trained artefact: the head, plus the LoRA factors when adapters are trained
        (``maxsim.models.adapter`` format; ``maxsim eval --head`` and ``apply_adapter`` read it)."""
        from maxsim.models.adapter import lora_factors, save_adapter

        lora: dict[str, tuple[torch.Tensor, torch.Tensor]]
        scale: float | None
        if self.args.trainable == "lora":
            lora, scale = lora_factors(self.model.encoder)
        elif self._frozen_lora is not None:  # a head trained on an adapter's (frozen) LoRA factors
            lora, scale = self._frozen_lora
        else:
            lora, scale = {}, None
        head = self.head
        if head.weight.device.type != "cpu":  # written from CPU copies
            head = nn.Linear(head.in_features, head.out_features, bias=head.bias is not None)
            head.load_state_dict({k: v.detach().cpu() for k, v in self.head.state_dict().items()})
            lora = {k: (a.cpu(), b.cpu()) for k, (a, b) in lora.items()}
        return save_adapter(path, head, lora, scale, metadata)

    # ------------------------------------------------------------------ one step
    def batch_loss(self, idx: Sequence[int], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        q_raw, q_mask, d_raw, d_mask, labels, ignore, candidates, teacher = self.batch_tensors(idx, step)
        return self.loss.compute_loss_from_embeddings(q_raw, q_mask, d_raw, d_mask, labels, ignore, candidates, teacher)

    def batch_tensors(
        self, idx: Sequence[int], step: int
    ) -> tuple[
        torch.Tensor,
        torch.Tensor,
        torch.Tensor,
        torch.Tensor,
        torch.Tensor,
        torch.Tensor,
        torch.Tensor | None,
        torch.Tensor | None,
    ]:
        """What the loss gets for one batch, all on the training device: q_raw, q_mask, d_raw,
        d_mask, labels, ignore, candidates, teacher (the last two None without distillation)."""
        rng = np.random.default_rng([self.args.seed, step])
        pairs = [self.pairs[i] for i in idx]
        docs: list[str] = []
        column: dict[str, int] = {}

        def col(text: str) -> int:
            if text not in column:
                column[text] = len(docs)
                docs.append(text)
            return column[text]

        labels, own = [], []
        for p in pairs:
            labels.append(col(p.positive))
            negs = p.negatives
            chosen = (
                sorted(rng.choice(len(negs), size=min(self.args.hard_negatives, len(negs)), replace=False).tolist())
                if negs
                else []
            )
            own.append([labels[-1]] + [col(negs[j]) for j in chosen])
        # a column is not a negative for a query when it is a positive of the same query text
        positives_of: dict[str, set[int]] = {}
        for p, lab in zip(pairs, labels):
            positives_of.setdefault(p.query, set()).add(lab)
        ignore = torch.zeros(len(pairs), len(docs), dtype=torch.bool)
        for r, p in enumerate(pairs):
            for c in positives_of[p.query]:
                ignore[r, c] = True
        candidates: torch.Tensor | None = None
        teacher: torch.Tensor | None = None
        if self.args.distill_weight > 0 and all(p.scores is not None for p in pairs):
            width = max(len(o) for o in own)
            candidates = torch.full((len(pairs), width), -1, dtype=torch.long)
            teacher = torch.zeros(len(pairs), width)
            for r, (p, o) in enumerate(zip(pairs, own)):
                assert p.scores is not None  # checked above
                candidates[r, : len(o)] = torch.tensor(o)
                teacher[r, : len(o)] = torch.tensor(p.scores[: len(o)])
        q_raw, q_mask = self.forward([p.query for p in pairs], True)
        d_raw, d_mask = self.forward(docs, False)
        device = q_raw.device  # built on the CPU, moved once (no-ops on the CPU)
        if candidates is not None and teacher is not None:
            candidates, teacher = candidates.to(device), teacher.to(device)
        return q_raw, q_mask, d_raw, d_mask, torch.tensor(labels, device=device), ignore.to(device), candidates, teacher

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, dims: Sequence[int] | None = None) -> dict[str, float]:
        """nDCG@10 on the dev pairs: per source, each dev query retrieves among that source's dev
        positives plus its training positives as distractors (a bigger, harder pool)."""
        from maxsim.evaluation.metrics import evaluate_run
        from maxsim.evaluation.runner import late_interaction_topk
        from maxsim.train.losses.scores import truncate_normalize

        if not self.dev_pairs:
            return {}
        dims = list(dims or sorted({max(self.args.dims), min(self.args.dims)}, reverse=True))
        groups: dict[str | None, list[Pair]] = {}
        for p in self.dev_pairs:
            groups.setdefault(p.source, []).append(p)
        scores: dict[int, list] = {d: [] for d in dims}
        distractors: dict[str | None, list[str]] = {}
        for p in self.pairs:
            distractors.setdefault(p.source, []).append(p.positive)
        if self.args.dev_distractors is not None:  # a fixed sample keeps evaluation cheap and comparable across steps
            rng = np.random.default_rng(self.args.seed)
            for source, docs in distractors.items():
                docs = unique_texts(docs)
                if len(docs) > self.args.dev_distractors:
                    docs = [docs[i] for i in sorted(rng.choice(len(docs), self.args.dev_distractors, replace=False))]
                distractors[source] = docs
        for source, pairs in groups.items():
            docs = unique_texts([p.positive for p in pairs] + distractors.get(source, []))
            queries = unique_texts(p.query for p in pairs)
            if len(docs) < 2:
                continue
            qrels: dict[str, dict[str, int]] = {}
            for p in pairs:
                qrels.setdefault(str(queries.index(p.query)), {})[str(docs.index(p.positive))] = 1
            q_raw, q_mask = self._encode(queries, True)
            d_raw, d_mask = self._encode(docs, False)
            for d in dims:
                qv = [truncate_normalize(q_raw[i][q_mask[i]], d).numpy() for i in range(len(queries))]
                dv = [truncate_normalize(d_raw[i][d_mask[i]], d).numpy() for i in range(len(docs))]
                idx, vals = late_interaction_topk(qv, dv, k=min(100, len(docs)))
                run = {str(i): {str(int(j)): float(s) for j, s in zip(idx[i], vals[i])} for i in range(len(queries))}
                scores[d].append(evaluate_run(qrels, run, ("ndcg@10",))["ndcg@10"])
        return {f"dev_ndcg@10@{d}": float(np.mean(v)) for d, v in scores.items() if v}

    def _encode(
        self, texts: list[str], is_query: bool, batch: int = 64
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        raws, masks = [], []
        was_training = self.forward.training
        self.forward.eval()
        for s in range(0, len(texts), batch):
            r, m = self.forward(texts[s : s + batch], is_query)
            raws.extend(r.float().cpu())  # scored with numpy; no-ops on the CPU
            masks.extend(m.cpu())
        self.forward.train(was_training)
        return raws, masks

    # ------------------------------------------------------------------ the loop
    def prepare(self) -> None:
        """For a frozen backbone: compute (or read from the cache) the states of every text once."""
        from maxsim.train.forward import CachedForward, TopLayersForward

        if isinstance(self.forward, (CachedForward, TopLayersForward)):
            everything = self.pairs + self.dev_pairs
            self.forward.add_texts(unique_texts(p.query for p in everything), True, self.args.show_progress)
            docs = unique_texts([p.positive for p in everything] + [n for p in everything for n in p.negatives])
            self.forward.add_texts(docs, False, self.args.show_progress)

    def train(self, resume: bool = True) -> TrainerState:
        args = self.args
        if resume and self.load_checkpoint():
            log.info(
                "resumed at step %d (epoch %d, batch %d)", self.state.step, self.state.epoch, self.state.batch_in_epoch
            )
        self.prepare()
        if self.state.step == 0 and self.dev_pairs and self.args.eval_steps:
            self._eval_and_keep_best()  # the starting point is a candidate too
        started = time.monotonic()
        bar = tqdm(
            total=self.total_steps,
            initial=self.state.step,
            desc="training",
            unit="step",
            disable=not args.show_progress,
        )
        stop = False
        running: list[float] = []
        try:
            for epoch in range(self.state.epoch, args.epochs):
                plan = batches(self.pairs, args.batch_size, epoch, args.seed)
                for b in range(self.state.batch_in_epoch if epoch == self.state.epoch else 0, len(plan)):
                    if self.state.step >= self.total_steps:
                        stop = True
                        break
                    self.optimizer.zero_grad(set_to_none=True)
                    loss, parts = self.batch_loss(plan[b], self.state.step)
                    loss.backward()
                    if args.max_grad_norm:
                        torch.nn.utils.clip_grad_norm_(list(self.trainable.values()), args.max_grad_norm)
                    self.optimizer.step()
                    self.scheduler.step()
                    self.state.step += 1
                    self.state.epoch, self.state.batch_in_epoch = epoch, b + 1
                    running.append(float(loss.detach()))
                    bar.update(1)
                    bar.set_postfix(loss=f"{np.mean(running[-args.logging_steps :]):.4f}")
                    if self.state.step % args.logging_steps == 0:
                        self.state.history.append(
                            {"step": self.state.step, "loss": float(np.mean(running[-args.logging_steps :])), **parts}
                        )
                    if args.eval_steps and self.dev_pairs and self.state.step % args.eval_steps == 0:
                        self._eval_and_keep_best()
                    if args.save_steps and self.state.step % args.save_steps == 0:
                        self.save_checkpoint()
                    if args.max_seconds is not None and time.monotonic() - started > args.max_seconds:
                        stop = True
                        break
                if stop:
                    break
                self.state.epoch, self.state.batch_in_epoch = epoch + 1, 0
        finally:
            bar.close()
        finished = self.state.step >= self.total_steps or self.state.epoch >= args.epochs
        if self.dev_pairs and (not self.state.history or self.state.history[-1].get("eval_step") != self.state.step):
            self._eval_and_keep_best()
        self.save_checkpoint()
        if finished:
            self.save_head(self.out / "head-last.safetensors", {"step": self.state.step})
            if not (self.out / "head.safetensors").is_file():  # no dev set: the last head is the result
                self.save_head(self.out / "head.safetensors", {"step": self.state.step})
            if self.args.trainable != "head":
                encoder_part = {
                    n: p.detach().cpu().contiguous() for n, p in self.trainable.items() if not n.startswith("head.")
                }
                save_file(encoder_part, str(self.out / "encoder-trainable.safetensors"))
            self._install_head()
        return self.state

    def _eval_and_keep_best(self) -> None:
        metrics = self.evaluate()
        if not metrics:
            return
        main = float(np.mean(list(metrics.values())))
        self.state.history.append({"step": self.state.step, "eval_step": self.state.step, **metrics})
        log.info("step %d: %s", self.state.step, metrics)
        if self.args.show_progress:
            tqdm.write(f"step {self.state.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        if self.state.best_metric is None or main > self.state.best_metric:
            self.state.best_metric, self.state.best_step = main, self.state.step
            self.save_head(
                self.out / "head.safetensors", {"step": self.state.step, **{k: f"{v:.4f}" for k, v in metrics.items()}}
            )

    def _install_head(self) -> None:
        """Leave the model serving the best weights found (by dev evaluation) with the new head."""
        from maxsim.models.adapter import read_adapter

        best = self.out / "head.safetensors"
        if best.is_file() and self.args.trainable in ("head", "lora"):
            head, lora, _, _ = read_adapter(best)
            modules = dict(self.model.encoder.named_modules())
            with torch.no_grad():
                self.head.weight.copy_(head.weight)
                if self.head.bias is not None and head.bias is not None:
                    self.head.bias.copy_(head.bias)
                for name, (a, b) in lora.items() if self.args.trainable == "lora" else ():  # head: merged
                    modules[name].lora_A["default"].weight.copy_(a)
                    modules[name].lora_B["default"].weight.copy_(b)
        # the model serves on the CPU (maxsim.Model's encoding path): trained modules come back
        self.model.encoder.to("cpu").eval()
        self.model.heads = {self.head.out_features: self.head.to("cpu").eval().requires_grad_(False)}
