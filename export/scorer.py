"""Qwen2 body with the score head folded to one dot product: logit("1") - logit("0") at the last position."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .spec import ModelSpec

COMPUTE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Pads come after every real token of a row: causal attention alone keeps real tokens from seeing them.
PADDING_SIDE = "right"


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # Reduction in fp32 whatever the compute dtype: fp16 squares overflow.
    x = x.float()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight.float()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x = x.float()
    return x * cos + _rotate_half(x) * sin


class FoldedHeadScorer(nn.Module):
    """Scores right-padded [batch, seq] token ids with a Hugging Face Qwen2ForCausalLM's weights.

    Right padding: row r holds its tokens at positions 0..len_r-1 and pads after them, so causal
    attention needs no mask tensor (no real token attends to a later position) and the attention is
    `scaled_dot_product_attention(is_causal=True, enable_gqa=True)`, exported as ONNX `Attention`
    (opset 23) that TensorRT and ONNX Runtime run as fused kernels: no tensor holds two sequence
    axes. RoPE is relative, so the scores equal the reference's on its left-padded batches. Tied
    embeddings make the head logits[16] - logits[15] = norm(h_last) . (E[16] - E[15]); the last
    layer runs for each row's last real token only (its index from the mask's length): one query
    attending keys 0..last through a [b, 1, 1, s] mask, then the MLP on that row.

    Precision: weights, matmuls and Q/K/V run in `compute_dtype` (RoPE is applied in fp32, then
    cast); the residual stream, RMSNorm and the final dot stay fp32 (Qwen2 overflows fp16 there).
    """

    padding_side = PADDING_SIDE

    def __init__(self, causal_lm: nn.Module, spec: ModelSpec, compute_dtype: str = "fp32"):
        super().__init__()
        config = causal_lm.config
        if getattr(config, "use_sliding_window", False):
            raise NotImplementedError("sliding-window attention is not supported (mxbai-rerank-v2 does not use it)")
        self.dtype_ = COMPUTE_DTYPES[compute_dtype]
        self.body = causal_lm.model
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.eps = config.rms_norm_eps
        head = causal_lm.get_output_embeddings().weight.detach().float()
        self.register_buffer("direction", (head[spec.yes_token_id] - head[spec.no_token_id]).clone())
        inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim))
        self.register_buffer("inv_freq", inv_freq)
        self.body.to(self.dtype_)

    def _attention(self, layer, x, cos, sin, last=None):
        """Causal self-attention of every position, or, given `last` [b], of each row's last real token only."""
        attn = layer.self_attn
        b, s, _ = x.shape
        k = attn.k_proj(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        v = attn.v_proj(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        k = _rope(k, cos, sin).to(self.dtype_)
        if last is None:
            q = attn.q_proj(x).view(b, s, self.heads, self.head_dim).transpose(1, 2)
            q = _rope(q, cos, sin).to(self.dtype_)
            # K/V keep their kv_heads: the op broadcasts query groups over them (GQA), never repeating K/V.
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        else:
            # One query per row, at position `last`: it may see keys 0..last, a [b, 1, 1, s] mask
            # (one sequence axis), instead of every position's causal attention.
            x_last = x.gather(1, last[:, None, None].expand(-1, 1, x.shape[-1]))
            q = attn.q_proj(x_last).view(b, 1, self.heads, self.head_dim).transpose(1, 2)
            q = _rope(q, cos[last][:, None, None], sin[last][:, None, None]).to(self.dtype_)
            visible = torch.arange(s, device=x.device)[None, :] <= last[:, None]
            # Additive, in the compute dtype (TensorRT lists float types for Attention's inputs);
            # key 0 is always visible, so no row is fully masked.
            bias = torch.where(visible, 0.0, torch.finfo(self.dtype_).min).to(self.dtype_)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[:, None, None, :], enable_gqa=True)
            s = 1
        return attn.o_proj(out.transpose(1, 2).reshape(b, s, self.heads * self.head_dim))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        seq = input_ids.shape[1]
        positions = torch.arange(seq, device=input_ids.device, dtype=torch.float32)
        angles = positions[:, None] * self.inv_freq[None, :]
        angles = torch.cat((angles, angles), dim=-1)  # [s, d], broadcast over batch and heads
        cos, sin = angles.cos(), angles.sin()
        last = attention_mask.sum(dim=1) - 1  # each row's last real token
        # where, not clamp: TensorRT's Clip takes float types only (export/trt_operators.md).
        last = torch.where(last < 0, torch.zeros_like(last), last)

        hidden = self.body.embed_tokens(input_ids).float()  # residual stream: fp32
        layers = self.body.layers
        for i, layer in enumerate(layers):
            normed = _rms_norm(hidden, layer.input_layernorm.weight, self.eps).to(self.dtype_)
            if i == len(layers) - 1:
                # Only the last real token feeds the head: the last layer runs for one row per sequence.
                hidden = hidden.gather(1, last[:, None, None].expand(-1, 1, hidden.shape[-1]))
                attn_out = self._attention(layer, normed, cos, sin, last)
            else:
                attn_out = self._attention(layer, normed, cos, sin)
            hidden = hidden + attn_out.float()
            normed = _rms_norm(hidden, layer.post_attention_layernorm.weight, self.eps).to(self.dtype_)
            mlp = layer.mlp
            hidden = hidden + mlp.down_proj(F.silu(mlp.gate_proj(normed)) * mlp.up_proj(normed)).float()
        last_hidden = _rms_norm(hidden[:, 0], self.body.norm.weight, self.eps)
        return (last_hidden @ self.direction)[:, None]
