"""Checks a local model repository before tritonserver starts, so a missing or broken file is named plainly."""

from __future__ import annotations

import re
from pathlib import Path

from mxbai_triton.core.model import ONNX_DATA_FILENAME, ONNX_FILENAME, SPEC_FILENAME
from mxbai_triton.core.preprocess import TOKENIZER_FILENAME
from mxbai_triton.core.serving import SERVING_FILENAME
from mxbai_triton.export.tensorrt import PLAN_FILENAME

from .openvino_options import parameter_problems

# What each of our python models reads at initialize(), by the backend module its model.py imports.
_PYTHON_MODEL_FILES = {
    "tokenizer_backend": (SPEC_FILENAME, SERVING_FILENAME, TOKENIZER_FILENAME),
    "scorer_backend": (SPEC_FILENAME, SERVING_FILENAME, ONNX_FILENAME),
}
_PLATFORM_FILES = {"onnxruntime_onnx": (ONNX_FILENAME,), "tensorrt_plan": (PLAN_FILENAME,)}


def is_remote(repository: str) -> bool:
    """s3://, gs://, as:// repositories are checked by tritonserver itself."""
    return bool(re.match(r"^(s3|gs|as)://", repository))


def _load_config(config_path: Path, problems: list[str]):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        return text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())
    except (text_format.ParseError, UnicodeDecodeError) as error:
        problems.append(f"{config_path}: not a valid Triton model config ({error})")
        return None


def _check_files(version_dir: Path, names: tuple[str, ...], problems: list[str]) -> None:
    for name in names:
        path = version_dir / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.stat().st_size == 0:
            problems.append(f"{path}: empty")
    _check_external_data(version_dir, problems)


def _check_external_data(version_dir: Path, problems: list[str]) -> None:
    onnx_path = version_dir / ONNX_FILENAME
    size = onnx_path.stat().st_size if onnx_path.is_file() else 0
    # A graph whose weights live in the data file is small and names that file; a bigger one holds its weights.
    if 0 < size < (1 << 24) and ONNX_DATA_FILENAME.encode() in onnx_path.read_bytes():
        if not (version_dir / ONNX_DATA_FILENAME).is_file():
            problems.append(f"{version_dir / ONNX_DATA_FILENAME}: missing ({ONNX_FILENAME} keeps its weights there)")


def _check_tokenizer(version_dir: Path, problems: list[str]) -> None:
    path = version_dir / TOKENIZER_FILENAME
    if not path.is_file() or not path.stat().st_size:
        return
    from tokenizers import Tokenizer

    try:
        Tokenizer.from_file(str(path))
    except Exception as error:  # noqa: BLE001 - tokenizers raises a bare Exception on bad JSON
        problems.append(f"{path}: not a loadable tokenizer ({error})")


def _check_spec(version_dir: Path, problems: list[str]) -> None:
    from mxbai_triton.core.model import ModelSpec
    from mxbai_triton.core.serving import ServingLimits

    for filename, loader, what in ((SPEC_FILENAME, ModelSpec, "model spec"), (SERVING_FILENAME, ServingLimits, "serving limits file")):
        path = version_dir / filename
        if path.is_file() and path.stat().st_size:
            try:
                loader.load(version_dir)
            except (ValueError, TypeError, KeyError) as error:
                problems.append(f"{path}: not a valid {what} ({error})")


def _check_model(model_dir: Path, names: set[str], problems: list[str]) -> None:
    config = _load_config(model_dir / "config.pbtxt", problems)
    if config is None:
        return
    if config.name and config.name != model_dir.name:
        problems.append(f"{model_dir / 'config.pbtxt'}: name {config.name!r} differs from its folder {model_dir.name!r}")
    versions = sorted(p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
    if not versions:
        problems.append(f"{model_dir}: no version folder (expected {model_dir / '1'})")
        return
    version_dir = versions[-1]
    if config.platform == "ensemble":
        for step in config.ensemble_scheduling.step:
            if step.model_name not in names:
                problems.append(f"{model_dir.name}: its step model {step.model_name!r} is not in the repository")
        return
    if config.backend == "python":
        scorer = config.parameters["scorer_model"].string_value if "scorer_model" in config.parameters else None
        if scorer and scorer not in names:
            problems.append(f"{model_dir.name}: the scorer model {scorer!r} it dispatches to is not in the repository")
        model_py = version_dir / "model.py"
        if not model_py.is_file():
            problems.append(f"{model_py}: missing")
            return
        text = model_py.read_text(errors="replace")
        for module, files in _PYTHON_MODEL_FILES.items():
            if module in text:
                _check_files(version_dir, files, problems)
                _check_spec(version_dir, problems)
        _check_tokenizer(version_dir, problems)
        return
    if config.backend == "openvino":  # the file it reads: default_model_filename, else model.xml (openvino_options.py)
        _check_files(version_dir, (config.default_model_filename or "model.xml",), problems)
        parameters = {k: v.string_value for k, v in config.parameters.items()}
        problems.extend(f"{model_dir / 'config.pbtxt'}: {problem}" for problem in parameter_problems(parameters))
        return
    _check_files(version_dir, _PLATFORM_FILES.get(config.platform or config.backend, ()), problems)


def check_repository(repository: str | Path) -> list[str]:
    """Problems that would stop a model of this repository from loading; empty when none is found."""
    root = Path(repository)
    if not root.is_dir():
        return [f"{root}: model repository not found"]
    models = sorted(p for p in root.iterdir() if p.is_dir() and (p / "config.pbtxt").is_file())
    if not models:
        return [f"{root}: no models (no */config.pbtxt)"]
    problems: list[str] = []
    names = {p.name for p in models}
    for model_dir in models:
        _check_model(model_dir, names, problems)
    return problems


def check_export(export_dir: str | Path) -> list[str]:
    """What an export directory lacks for `repo` (an interrupted or hand-copied one); empty when it is whole."""
    directory = Path(export_dir)
    if not (directory / SPEC_FILENAME).is_file():
        partial = sorted(directory.parent.glob(f".{directory.name}.partial-*"))
        hint = f"; an interrupted export left {partial[0]}: run the export again" if partial else ""
        return [f"{directory}: not an export directory (no {SPEC_FILENAME}){hint}"]
    problems: list[str] = []
    _check_files(directory, (SPEC_FILENAME, TOKENIZER_FILENAME, ONNX_FILENAME), problems)
    _check_spec(directory, problems)
    _check_tokenizer(directory, problems)
    return problems
