"""The serving core: the model spec, preprocessing, dispatch planning, memory and runtime sessions; no torch, used by every stage."""

from mxbai_triton import require_package_name

require_package_name(__name__, "core")

