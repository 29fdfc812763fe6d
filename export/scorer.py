"""Qwen2 body with the score head folded to one dot product: logit("1") - logit("0") at the last position."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .spec import ModelSpec

COMPUTE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Finite, so a fully masked row (left padding) gives a uniform softmax instead of NaN.
MASK_VALUE = torch.finfo(torch.float32).min


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # Reduction in fp32 whatever the compute dtype: fp16 squares overflow.
    x = x.float()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight.float()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class FoldedHeadScorer(nn.Module):
    """Scores left-padded [batch, seq] token ids with a Hugging Face Qwen2ForCausalLM's weights.

    Matches the reference forward: positions are 0..seq-1 for every row (transformers derives them
    from cache_position, not from the mask), causal + padding mask. Tied embeddings make the head
    logits[16] - logits[15] = norm(h_last) . (E[16] - E[15]), so no vocab-wide matmul is built.

    Precision: weights and matmuls run in `compute_dtype`; the residual stream, RMSNorm, RoPE,
    attention scores/softmax and the final dot stay fp32 (Qwen2 overflows fp16 there).
    """

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

    def _attention(self, layer, x, cos, sin, bias, last_only):
        attn = layer.self_attn
        b, s, _ = x.shape
        q_in = x[:, -1:] if last_only else x
        q = attn.q_proj(q_in).view(b, q_in.shape[1], self.kv_heads, -1, self.head_dim).transpose(1, 2)
        k = attn.k_proj(x).view(b, s, self.kv_heads, 1, self.head_dim).transpose(1, 2)
        v = attn.v_proj(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        q_cos, q_sin = (cos[-1:], sin[-1:]) if last_only else (cos, sin)
        q = q.float() * q_cos + _rotate_half(q.float()) * q_sin
        k = k.float() * cos + _rotate_half(k.float()) * sin
        # Grouped-query attention by broadcasting [b, kv, group, s_q, d] against [b, kv, 1, s_k, d]:
        # K/V are never repeated in memory.
        q = q.permute(0, 1, 3, 2, 4)  # [b, kv, group, s_q, d]
        k = k.permute(0, 1, 3, 2, 4)  # [b, kv, 1, s_k, d]
        scores = torch.matmul(q * self.head_dim**-0.5, k.transpose(-1, -2)) + bias
        probs = torch.softmax(scores, dim=-1).to(self.dtype_)
        out = torch.matmul(probs, v[:, :, None])  # [b, kv, group, s_q, d]
        out = out.permute(0, 3, 1, 2, 4).reshape(b, q_in.shape[1], self.heads * self.head_dim)
        return attn.o_proj(out)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        seq = input_ids.shape[1]
        positions = torch.arange(seq, device=input_ids.device, dtype=torch.float32)
        angles = positions[:, None] * self.inv_freq[None, :]
        angles = torch.cat((angles, angles), dim=-1)  # [s, d]
        cos, sin = angles.cos()[:, None], angles.sin()[:, None]  # [s, 1, d], broadcast over groups
        idx = torch.arange(seq, device=input_ids.device)
        allowed = (idx[None, :] <= idx[:, None])[None] & attention_mask.bool()[:, None, :]  # [b, s, s]
        bias = torch.where(allowed, 0.0, MASK_VALUE)[:, None, None]  # [b, 1, 1, s, s]

        hidden = self.body.embed_tokens(input_ids).float()  # residual stream: fp32
        layers = self.body.layers
        for i, layer in enumerate(layers):
            last_only = i == len(layers) - 1
            normed = _rms_norm(hidden, layer.input_layernorm.weight, self.eps).to(self.dtype_)
            layer_bias = bias[..., -1:, :] if last_only else bias
            attn_out = self._attention(layer, normed, cos, sin, layer_bias, last_only)
            # The last layer only feeds the last position into the head: skip the other rows.
            hidden = (hidden[:, -1:] if last_only else hidden) + attn_out.float()
            normed = _rms_norm(hidden, layer.post_attention_layernorm.weight, self.eps).to(self.dtype_)
            mlp = layer.mlp
            hidden = hidden + mlp.down_proj(F.silu(mlp.gate_proj(normed)) * mlp.up_proj(normed)).float()
        last = _rms_norm(hidden[:, -1], self.body.norm.weight, self.eps)
        return (last @ self.direction)[:, None]
