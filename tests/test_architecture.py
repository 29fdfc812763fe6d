"""The folders are the pipeline: imports between the project's modules form no cycle, and each stage imports only what precedes it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"core": "core", "export": "export", "model_repository": "model_repository", "client": "client",
            "gateway": "gateway", "perf": "perf", "evaluation": "evaluation", "mxbai_triton": "mxbai_triton"}
# Which stages a stage may import (anywhere in a module, lazy imports included): the earlier stages and
# the core, no exceptions.
ALLOWED = {
    "core": {"core"},
    "export": {"core", "export"},
    "model_repository": {"core", "export", "model_repository"},
    "client": {"core", "client"},
    "gateway": {"core", "client", "gateway"},
    "evaluation": {"core", "client", "evaluation"},
    "perf": {"core", "export", "model_repository", "client", "gateway", "perf"},
    "mxbai_triton": set(PACKAGES),
}
# Logging and exit codes, third-party noise, child processes: import no stage, any stage may import them.
SHARED = {"mxbai_triton.console", "mxbai_triton.noise", "mxbai_triton.processes"}


def _module_name(path: Path) -> str:
    package = PACKAGES[path.relative_to(ROOT).parts[0]]
    return f"{package}.{path.stem}"


def _imports(path: Path) -> set[str]:
    """Project modules `path` imports, as "stage.module", at any depth of the file."""
    package = path.relative_to(ROOT).parts[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom) or node.module is None and node.level == 0:
            continue
        if node.level == 1:  # from .x import y  /  from . import x
            targets = [node.module] if node.module else [alias.name for alias in node.names]
            found |= {f"{package}.{t.split('.')[0]}" for t in targets}
        elif node.module and node.module.startswith("mxbai_triton."):
            parts = node.module.split(".")
            if len(parts) > 2:
                found.add(f"{parts[1]}.{parts[2]}")
            elif parts[1] in PACKAGES:  # from mxbai_triton.client import cli / RerankClient
                found |= {f"{parts[1]}.{a.name}" if (ROOT / parts[1] / f"{a.name}.py").is_file()
                          else f"{parts[1]}.__init__" for a in node.names}
            else:
                found.add(f"mxbai_triton.{parts[1]}")
    return found


def _graph() -> dict[str, set[str]]:
    files = [p for folder in PACKAGES for p in (ROOT / folder).glob("*.py")]
    return {_module_name(p): _imports(p) for p in files}


def test_no_import_cycles_between_modules():
    graph, state, cycles = _graph(), {}, []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                cycles.append(trail[trail.index(target):] + [target] if target in trail else [node, target])
            elif target not in state:
                visit(target, trail + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_each_stage_imports_only_the_stages_before_it():
    wrong = {(module, target) for module, targets in _graph().items() for target in targets
             if target not in SHARED and target.split(".")[0] not in ALLOWED[module.split(".")[0]]}
    assert wrong == set()


def test_the_shared_modules_import_no_stage():
    for module in SHARED:
        assert _imports(ROOT / "mxbai_triton" / f"{module.split('.')[1]}.py") == set(), module


def test_the_serving_core_and_the_python_models_load_without_torch():
    import subprocess
    import sys

    code = ("import sys\n"
            "import mxbai_triton.core.model, mxbai_triton.core.preprocess, mxbai_triton.core.dispatch, mxbai_triton.core.memory\n"
            "import mxbai_triton.core.runtime, mxbai_triton.model_repository.tokenizer_backend\n"
            "import mxbai_triton.model_repository.scorer_backend, mxbai_triton.gateway.app, mxbai_triton.client\n"
            "print(sorted(m for m in ('torch', 'transformers', 'onnx', 'onnxscript') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (run.returncode, run.stdout.strip()) == (0, "[]"), run.stderr


def test_a_stage_folder_imported_under_its_bare_name_is_refused_with_the_name_to_use():
    import subprocess
    import sys

    for stage in sorted(set(PACKAGES) - {"mxbai_triton"}):
        run = subprocess.run([sys.executable, "-c", f"import {stage}"], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert run.returncode == 1 and run.stderr.strip().endswith(
            f"ImportError: '{stage}' is the folder of mxbai_triton.{stage}: import mxbai_triton.{stage} instead"), stage


def test_no_project_module_is_loaded_under_two_names():
    import importlib
    import sys

    for path in sorted(p for folder in PACKAGES for p in (ROOT / folder).glob("*.py")):
        package = f"mxbai_triton.{path.parent.name}" if path.parent.name != "mxbai_triton" else "mxbai_triton"
        if path.stem != "__main__":
            importlib.import_module(package if path.stem == "__init__" else f"{package}.{path.stem}")
    names: dict[Path, list[str]] = {}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and Path(file).resolve().is_relative_to(ROOT) and ".venv" not in Path(file).parts:
            names.setdefault(Path(file).resolve(), []).append(name)
    assert {str(f.relative_to(ROOT)): n for f, n in names.items() if len(n) > 1} == {}
