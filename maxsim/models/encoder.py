"""A post-norm transformer encoder in plain torch: BERT and XLM-RoBERTa (absolute or rotary positions).

One module serves both families the project runs: multilingual-e5-small (BERT, absolute
positions) and Jina-ColBERT-v2's backbone (XLM-RoBERTa with rotary positions, fused QKV).
Attention goes through ``scaled_dot_product_attention`` so each device picks its fused kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import nn

from maxsim.errors import InvalidArgumentError


@dataclass(frozen=True)
class EncoderConfig:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_positions: int
    type_vocab_size: int = 1
    layer_norm_eps: float = 1e-12
    position_embedding: Literal["absolute", "rotary"] = "absolute"
    rotary_base: float = 10000.0
    activation: Literal["gelu", "gelu_tanh"] = "gelu"
    # Additive score for padded keys; -10000 as in BERT and Jina's reference code.
    padding_score: float = -10000.0

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise InvalidArgumentError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


class RotaryEmbedding(nn.Module):
    """Half-split ("rotate_half", GPT-NeoX) rotary positions over the full head dimension."""

    def __init__(self, head_dim: int, base: float) -> None:
        super().__init__()
        # No buffer: the frequencies are computed on use, so an encoder built on the meta device
        # and filled from a checkpoint (which holds no rotary tensors) needs no extra step.
        self.head_dim = head_dim
        self.base = float(base)
        self._cache: tuple[int, torch.device, torch.dtype, torch.Tensor, torch.Tensor] | None = None

    def inv_freq(self, device: torch.device | None = None) -> torch.Tensor:
        """base^(-2i/d) for i = 0 .. d/2-1, float32."""
        exponents = torch.arange(0, self.head_dim, 2, dtype=torch.float32, device=device) / self.head_dim
        return 1.0 / (self.base**exponents)

    def cos_sin(self, length: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        cached = self._cache
        if cached is not None and cached[0] >= length and cached[1] == device and cached[2] == dtype:
            return cached[3][:length], cached[4][:length]
        # Angles in float32, then cast to the activation dtype.
        positions = torch.arange(length, device=device, dtype=torch.float32)
        angles = torch.outer(positions, self.inv_freq(device))
        cos, sin = angles.cos().to(dtype), angles.sin().to(dtype)
        self._cache = (length, device, dtype, cos, sin)
        return cos, sin

    @staticmethod
    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """x [B, heads, L, head_dim]; cos/sin [L, head_dim/2]."""
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class EncoderLayer(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        h = config.hidden_size
        self.num_heads = config.num_heads
        self.head_dim = config.head_dim
        self.Wqkv = nn.Linear(h, 3 * h)
        self.out_proj = nn.Linear(h, h)
        self.norm1 = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.fc1 = nn.Linear(h, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, h)
        self.norm2 = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.approximate = "tanh" if config.activation == "gelu_tanh" else "none"

    def forward(
        self, x: torch.Tensor, key_bias: torch.Tensor | None, rotary: tuple[torch.Tensor, torch.Tensor] | None
    ) -> torch.Tensor:
        return self._mix(x, self._attend(self.Wqkv(x), key_bias, rotary))

    def forward_packed(
        self,
        x: torch.Tensor,
        rows: torch.Tensor,
        shape: tuple[int, int],
        key_bias: torch.Tensor | None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> torch.Tensor:
        """The same layer on packed hidden states ``x`` [N, H], the real positions of a [B, L]
        batch (``rows``: their flat indices in B * L). The linear layers and the feed-forward,
        nearly all the work, run on real positions only; attention alone sees the padded layout."""
        b, length = shape
        qkv = self.Wqkv(x)  # under autocast its dtype is not x's
        qkv = qkv.new_zeros(b * length, qkv.shape[1]).index_copy_(0, rows, qkv).view(b, length, -1)
        ctx = self._attend(qkv, key_bias, rotary).reshape(b * length, -1).index_select(0, rows)
        return self._mix(x, ctx)

    def _attend(
        self, qkv: torch.Tensor, key_bias: torch.Tensor | None, rotary: tuple[torch.Tensor, torch.Tensor] | None
    ) -> torch.Tensor:
        """Fused projections [B, L, 3H] -> attention output [B, L, H]."""
        b, length, _ = qkv.shape
        # [B, L, 3, heads, head_dim] -> three of [B, heads, L, head_dim]
        q, k, v = qkv.view(b, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if rotary is not None:
            cos, sin = rotary
            q = RotaryEmbedding.rotate(q, cos, sin)
            k = RotaryEmbedding.rotate(k, cos, sin)
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=key_bias)
        return ctx.transpose(1, 2).reshape(b, length, self.num_heads * self.head_dim)

    def _mix(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        """Output projection, residual, LayerNorm, then the feed-forward block (post-norm)."""
        x = self.norm1(x + self.out_proj(ctx))
        return self.norm2(x + self.fc2(F.gelu(self.fc1(x), approximate=self.approximate)))


class TransformerEncoder(nn.Module):
    """input_ids [B, L], attention_mask [B, L] (1 = token, 0 = padding) -> last hidden state [B, L, H]."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, h)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, h)
        self.position_embeddings = (
            nn.Embedding(config.max_positions, h) if config.position_embedding == "absolute" else None
        )
        self.rotary = (
            RotaryEmbedding(config.head_dim, config.rotary_base) if config.position_embedding == "rotary" else None
        )
        self.emb_ln = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_layers))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.run_layers(self.embed(input_ids), attention_mask)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token (+ absolute position) embeddings after the embedding LayerNorm: [B, L, H]."""
        length = input_ids.shape[1]
        if length > self.config.max_positions:
            raise InvalidArgumentError(
                f"sequence of {length} tokens exceeds the model's {self.config.max_positions} positions"
            )
        x = self.word_embeddings(input_ids) + self.token_type_embeddings.weight[0]
        if self.position_embeddings is not None:
            x = x + self.position_embeddings.weight[:length]
        return self.emb_ln(x)

    def run_layers(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        start: int = 0,
        stop: int | None = None,
        lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Layers ``start:stop`` on hidden states ``x`` [B, L, H]. Training caches the frozen
        lower layers' output once and runs only the top ones each step. With ``lengths`` (real
        positions per row), the positions past them are skipped (see ``forward_packed``) and come
        back as zeros."""
        if lengths is not None:
            packed, rows = self._run_packed(x, attention_mask, lengths, start, stop)
            if rows is None:
                return packed.view_as(x)
            b, length, h = x.shape
            return packed.new_zeros(b * length, h).index_copy(0, rows, packed).view(b, length, h)
        key_bias = self._key_bias(attention_mask, x.dtype)
        rotary = self.rotary.cos_sin(x.shape[1], x.device, x.dtype) if self.rotary is not None else None
        for layer in self.layers[start:stop]:
            x = layer(x, key_bias, rotary)
        return x

    def forward_packed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """Last hidden state of the first ``lengths[i]`` positions of each row, packed row after
        row: [sum(lengths), H]. Positions past a row's length are padding: they are never computed
        and, through ``attention_mask``, never attended to. Positions inside a row keep their mask
        (a checkpoint whose query mask tokens are not attended to still gets their vectors).

        Equal to ``forward`` on those positions up to float rounding, and faster when lengths
        differ: a batch of short and long texts costs its real tokens in the linear layers,
        not rows x longest."""
        return self._run_packed(self.embed(input_ids), attention_mask, lengths)[0]

    def _run_packed(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None,
        lengths: torch.Tensor,
        start: int = 0,
        stop: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Layers on the real positions of ``x`` [B, L, H]: ([sum(lengths), H], their flat
        indices in B * L), or ([B * L, H], None) when no row is padded."""
        b, length, h = x.shape
        valid = torch.arange(length, device=x.device)[None, :] < lengths.to(x.device)[:, None]
        if bool(valid.all()):
            return self.run_layers(x, attention_mask, start, stop).reshape(b * length, h), None
        rows = valid.reshape(-1).nonzero().squeeze(1)
        key_bias = self._key_bias(attention_mask, x.dtype)
        rotary = self.rotary.cos_sin(length, x.device, x.dtype) if self.rotary is not None else None
        packed = x.reshape(b * length, h).index_select(0, rows)
        for layer in self.layers[start:stop]:
            packed = cast(EncoderLayer, layer).forward_packed(packed, rows, (b, length), key_bias, rotary)
        return packed, rows

    def _key_bias(self, attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
        """[B, 1, 1, L]: keys masked out get a large negative score, broadcast over heads and
        queries; None when every key is attended to."""
        if attention_mask is None or bool(attention_mask.all()):
            return None
        return (1.0 - attention_mask[:, None, None, :].to(dtype)) * self.config.padding_score

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def init_weights(module: nn.Module, std: float = 0.02, seed: int | None = None) -> None:
    """Random BERT-style initialisation (for tests and timing of untrained shapes)."""
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * std)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    m.bias.zero_()
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
