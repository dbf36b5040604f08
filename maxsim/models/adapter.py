"""Trained adapters: a ColBERT projection head plus optional LoRA deltas for some encoder layers.

One safetensors file holds

- ``weight`` [out, hidden] and ``bias`` [out]: the projection head;
- ``lora.<module>.A`` [r, in] and ``lora.<module>.B`` [out, r] for each adapted ``nn.Linear``
  (``<module>`` is its name in the encoder, e.g. ``layers.11.fc1``), with the metadata key
  ``lora_scale`` (alpha / r).

Applying an adapter merges ``scale * B @ A`` into the base weights once, so inference runs the
plain encoder at full speed and needs no adapter library. The file stays small (a few MB)
because only the low-rank factors are stored.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from maxsim.errors import MaxsimError

LORA_PREFIX = "lora."


class AdapterNotFoundError(MaxsimError, FileNotFoundError):
    """No adapter file at the given path."""


class AdapterError(MaxsimError, ValueError):
    """An adapter file that does not fit the model it is applied to."""


def lora_factors(module: nn.Module) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], float | None]:
    """The (A, B) factors of every LoRA-wrapped Linear in ``module`` (peft layers), and the scale."""
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    scale = None
    for name, sub in module.named_modules():
        a, b = getattr(sub, "lora_A", None), getattr(sub, "lora_B", None)
        if not isinstance(a, nn.ModuleDict) or not isinstance(b, nn.ModuleDict) or "default" not in a:
            continue
        a_weight, b_weight = a["default"].weight, b["default"].weight
        assert isinstance(a_weight, torch.Tensor) and isinstance(b_weight, torch.Tensor)
        factors[name] = (a_weight.detach().float().clone(), b_weight.detach().float().clone())
        scale = float(getattr(sub, "scaling")["default"])
    return factors, scale


def save_adapter(
    path: str | Path,
    head: nn.Linear,
    lora: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    lora_scale: float | None = None,
    metadata: dict | None = None,
) -> Path:
    """Write head (+ LoRA factors) to ``path``; float16 factors keep the file small."""
    tensors = {"weight": head.weight.detach().float().contiguous()}
    if head.bias is not None:
        tensors["bias"] = head.bias.detach().float().contiguous()
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    for name, (a, b) in (lora or {}).items():
        tensors[f"{LORA_PREFIX}{name}.A"] = a.detach().to(torch.float16).contiguous()
        tensors[f"{LORA_PREFIX}{name}.B"] = b.detach().to(torch.float16).contiguous()
    if lora:
        if lora_scale is None:
            raise AdapterError("LoRA factors need their scale (alpha / r)")
        meta["lora_scale"] = repr(float(lora_scale))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def read_adapter(path: str | Path) -> tuple[nn.Linear, dict[str, tuple[torch.Tensor, torch.Tensor]], float, dict]:
    """(head, LoRA factors by module name, scale, metadata) from an adapter or a plain head file."""
    path = Path(path)
    if not path.is_file():
        raise AdapterNotFoundError(f"adapter file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
            keys = set(fh.keys())
            if "weight" not in keys:
                raise AdapterError(f"{path}: no head 'weight' tensor (keys: {sorted(keys)[:5]})")
            weight = fh.get_tensor("weight").float()
            bias = fh.get_tensor("bias").float() if "bias" in keys else None
            lora: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
            for key in sorted(k for k in keys if k.startswith(LORA_PREFIX) and k.endswith(".A")):
                name = key[len(LORA_PREFIX) : -2]
                if f"{LORA_PREFIX}{name}.B" not in keys:
                    raise AdapterError(f"{path}: LoRA factor A of {name} has no B")
                lora[name] = (fh.get_tensor(key).float(), fh.get_tensor(f"{LORA_PREFIX}{name}.B").float())
    except AdapterError:
        raise
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise AdapterError(f"{path}: not a readable safetensors adapter ({exc})") from None
    if weight.ndim != 2 or (bias is not None and bias.shape != (weight.shape[0],)):
        raise AdapterError(
            f"{path}: head weight {tuple(weight.shape)} / bias {None if bias is None else tuple(bias.shape)} do not fit"
        )
    head = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        head.weight.copy_(weight)
        if bias is not None:
            head.bias.copy_(bias)
    scale = float(meta.get("lora_scale", "0") or 0)
    if lora and scale == 0:
        raise AdapterError(f"{path}: LoRA factors without a 'lora_scale' metadata entry")
    return head.requires_grad_(False), lora, scale, meta


@torch.no_grad()
def merge_lora(encoder: nn.Module, lora: dict[str, tuple[torch.Tensor, torch.Tensor]], scale: float) -> None:
    """Add ``scale * B @ A`` to each named Linear's weight, in place."""
    modules = dict(encoder.named_modules())
    for name, (a, b) in lora.items():
        target = modules.get(name)
        if not isinstance(target, nn.Linear):
            raise AdapterError(f"LoRA factors for {name!r}, which is not a Linear layer of this encoder")
        if a.shape[1] != target.in_features or b.shape[0] != target.out_features or a.shape[0] != b.shape[1]:
            raise AdapterError(
                f"LoRA factors for {name} have shapes A {tuple(a.shape)}, B {tuple(b.shape)}; "
                f"the layer is {target.in_features} -> {target.out_features}"
            )
        target.weight.add_((b @ a).to(target.weight.dtype), alpha=scale)


def apply_adapter(model, path: str | Path) -> dict:
    """Merge an adapter file into ``model`` (encoder weights and head), in place; returns its metadata."""
    head, lora, scale, meta = read_adapter(path)
    if head.in_features != model._hidden_size():
        raise AdapterError(
            f"{path}: head expects {head.in_features} inputs; the model's backbone gives {model._hidden_size()}"
        )
    if lora:
        merge_lora(model.encoder, lora, scale)
    model.heads = {head.out_features: head.float().requires_grad_(False)}
    return meta
