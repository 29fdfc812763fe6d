"""The public wire contract beyond tensors: request priorities and the parameter the dispatch reads (shared by every stage)."""

from __future__ import annotations

# Triton priority levels of the tokenizer's queue: 1 interactive, 2 bulk (0 = the default level).
PRIORITY_INTERACTIVE, PRIORITY_BULK = 1, 2
PRIORITIES = (0, PRIORITY_INTERACTIVE, PRIORITY_BULK)
# The same level as a request parameter, for the dispatch: a python model cannot read a request's
# Triton priority (python_backend's InferenceRequest has no accessor and BLS requests no setter).
PRIORITY_PARAMETER = "dispatch_priority"
# What the dispatch does with a document whose prompt is longer than the model takes (NIM's `truncate`
# parameter and values): "END" cuts it as the reference does (the default), "NONE" refuses the request
# after tokenizing, before any scoring.
TRUNCATE_PARAMETER = "truncate"
TRUNCATE_VALUES = ("END", "NONE")
