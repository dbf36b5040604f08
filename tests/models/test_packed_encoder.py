"""The encoder's packed forward (real positions only) against the padded one."""

from __future__ import annotations

import pytest
import torch

from maxsim.models.encoder import EncoderConfig, TransformerEncoder, init_weights


def _encoder(position_embedding: str) -> TransformerEncoder:
    config = EncoderConfig(
        vocab_size=97,
        hidden_size=64,
        num_layers=3,
        num_heads=4,
        intermediate_size=128,
        max_positions=64,
        position_embedding=position_embedding,
    )
    enc = TransformerEncoder(config)
    init_weights(enc, std=0.2, seed=3)
    return enc.eval()


@pytest.mark.parametrize("position_embedding", ["absolute", "rotary"])
def test_packed_equals_padded_on_real_positions(position_embedding):
    enc = _encoder(position_embedding)
    gen = torch.Generator().manual_seed(0)
    lengths = torch.tensor([5, 17, 1, 11])
    ids = torch.randint(1, 97, (4, 17), generator=gen)
    mask = (torch.arange(17)[None, :] < lengths[:, None]).long()
    # a row whose last positions are inside its length but not attended to (ColBERT checkpoints
    # that do not attend to query mask tokens): they still get vectors, and nobody attends to them
    mask[1, 14:] = 0
    with torch.inference_mode():
        padded = enc(ids, mask)
        packed = enc.forward_packed(ids, mask, lengths)
    expected = torch.cat([padded[i, : int(n)] for i, n in enumerate(lengths)])
    assert packed.shape == (int(lengths.sum()), 64)
    torch.testing.assert_close(packed, expected, atol=1e-5, rtol=1e-5)
    # what sits in the padding must not matter: other pad ids give the same packed rows
    ids2 = ids.clone()
    ids2[~(torch.arange(17)[None, :] < lengths[:, None])] = 7
    with torch.inference_mode():
        torch.testing.assert_close(enc.forward_packed(ids2, mask, lengths), packed, atol=1e-6, rtol=1e-6)


def test_packed_without_padding_is_the_plain_forward():
    enc = _encoder("absolute")
    ids = torch.randint(1, 97, (2, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        out = enc.forward_packed(ids, mask, torch.tensor([9, 9]))
        torch.testing.assert_close(out, enc(ids, mask).reshape(18, 64))


def test_packed_gradients_match_padded():
    # the training path may use it too: gradients flow through the gather/scatter
    enc = _encoder("rotary")
    ids = torch.randint(1, 97, (2, 8), generator=torch.Generator().manual_seed(2))
    lengths = torch.tensor([8, 3])
    mask = (torch.arange(8)[None, :] < lengths[:, None]).long()
    enc.zero_grad()
    enc.forward_packed(ids, mask, lengths).square().sum().backward()
    packed_grad = enc.layers[0].Wqkv.weight.grad.clone()
    enc.zero_grad()
    out = enc(ids, mask)
    torch.cat([out[0, :8], out[1, :3]]).square().sum().backward()
    torch.testing.assert_close(packed_grad, enc.layers[0].Wqkv.weight.grad, atol=1e-4, rtol=1e-4)


def test_run_layers_with_lengths_under_bf16_autocast():
    # training runs the top layers on cached states under autocast; padded rows come back as zeros
    enc = _encoder("absolute")
    x = torch.randn(3, 10, 64, generator=torch.Generator().manual_seed(4))
    lengths = torch.tensor([10, 4, 7])
    mask = (torch.arange(10)[None, :] < lengths[:, None]).long()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = enc.run_layers(x, mask, 1, None, lengths=lengths)
        ref = enc.run_layers(x, mask, 1, None)
    assert out.shape == ref.shape
    assert torch.count_nonzero(out[1, 4:]) == 0 and torch.count_nonzero(out[2, 7:]) == 0
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(out[i, :n].float(), ref[i, :n].float(), atol=0.1, rtol=0.05)
