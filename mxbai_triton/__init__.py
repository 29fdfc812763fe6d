"""mxbai-rerank-v2 on NVIDIA Triton, under one import name: the stage folders core/, export/, model_repository/,
client/, gateway/, evaluation/ and perf/ are the packages mxbai_triton.<folder> (pyproject's package-dir); this
folder holds the CLI, `serve` and `demo`."""

__version__ = "0.1.0"


def require_package_name(name: str, stage: str) -> None:
    """Refuse a stage folder imported under its bare name (the repository root on sys.path): a module loaded under
    two names runs twice and keeps two copies of its state."""
    if name != f"mxbai_triton.{stage}":
        raise ImportError(f"'{name}' is the folder of mxbai_triton.{stage}: import mxbai_triton.{stage} instead")
