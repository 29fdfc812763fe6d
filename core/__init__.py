"""The serving core: the model spec, preprocessing, dispatch planning, memory and runtime sessions; no torch, used by every stage."""
