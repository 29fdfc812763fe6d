"""fp16 or bf16 range and rounding on a CPU at fp32 speed: the scorer with weights and every Linear's input and output rounded.

Overflow becomes inf as in fp16; products accumulate in fp32 as on tensor cores (and as AVX512_BF16
and AMX dot products do). Softmax probabilities and SiLU outputs are not rounded before their next
product, so precision is slightly better than the real dtype while the range is the same: an
8k-token check of the real shapes on a CPU, and bf16 on a CPU whose bf16 matmuls are emulated (1 GFLOP/s).
"""

from __future__ import annotations


def emulate_reduced(scorer, dtype: str = "fp16"):
    """Round weights, and every Linear's input and output, to `dtype` ("fp16" or "bf16") values while computing in fp32 (in place)."""
    import torch
    from torch import nn

    reduced = {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype]

    def to_half(tensor):
        return tensor.to(reduced).to(tensor.dtype)

    with torch.no_grad():
        for parameter in scorer.body.parameters():
            parameter.copy_(to_half(parameter))
    for module in scorer.body.modules():
        if isinstance(module, nn.Linear):
            module.register_forward_pre_hook(lambda _, args: tuple(to_half(a) for a in args))
            module.register_forward_hook(lambda _, __, output: to_half(output))
    return scorer
