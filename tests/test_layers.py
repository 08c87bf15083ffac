"""The layers of ser_fast hold: the import contracts in pyproject.toml (import-linter), no module
importing another's private name, the Triton kernels importing only themselves and the ops, and the
model kinds listed nowhere but in the registry."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ser_fast.runs.registry import kind_names

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _library_modules() -> list[tuple[Path, str, bool]]:
    """``(file, module name, is a package)`` of every module of ser_fast, kernels/ as ser_fast.kernels."""
    found = []
    for base, prefix in ((ROOT / "ser_fast", "ser_fast"), (ROOT / "kernels", "ser_fast.kernels")):
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            found.append((path, ".".join([prefix, *(parts[:-1] if is_package else parts)]), is_package))
    return found


def _imports(path: Path) -> list[tuple[str, str | None]]:
    """``(module, name imported from it or None)`` for every absolute import of ser_fast in a file."""
    imported = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("ser_fast"):
            imported += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            imported += [(alias.name, None) for alias in node.names if alias.name.startswith("ser_fast")]
    return imported


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _run_lint_imports(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = None if pythonpath is None else {"PYTHONPATH": str(pythonpath), "PATH": str(LINT_IMPORTS.parent)}
    return subprocess.run([str(LINT_IMPORTS)], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.skipif(not LINT_IMPORTS.is_file(), reason="import-linter is not installed (the test extra has it)")
def test_the_import_contracts_hold():
    done = _run_lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "1 kept, 0 broken" in done.stdout


@pytest.mark.skipif(not LINT_IMPORTS.is_file(), reason="import-linter is not installed (the test extra has it)")
@pytest.mark.parametrize("importer, imported", [
    pytest.param("models/dsnet.py", "ser_fast.training.run", id="models-import-training"),
    pytest.param("runs/saved.py", "ser_fast.inference.recognizer", id="runs-import-inference"),
    pytest.param("evaluation/report.py", "ser_fast.training.loop", id="evaluation-import-training"),
])
def test_an_import_upward_or_across_fails_the_contracts(tmp_path, importer, imported):
    copy = tmp_path / "ser_fast"
    shutil.copytree(ROOT / "ser_fast", copy, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    target = copy / importer
    target.write_text(target.read_text() + f"\nimport {imported}  # noqa\n")
    done = _run_lint_imports(tmp_path, pythonpath=tmp_path)
    assert done.returncode != 0 and "BROKEN" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
    assert imported.rsplit(".", 1)[0] in done.stdout


def test_no_module_imports_another_modules_private_name():
    """A private module may be imported inside its own package; a private name never from outside its module."""
    wrong = []
    for path, name, _ in _library_modules():
        for module, imported in _imports(path):
            parts = module.split(".")
            for i, part in enumerate(parts):
                owner = ".".join(parts[:i])
                if _private(part) and not f"{name}.".startswith(f"{owner}."):
                    wrong.append(f"{name} imports {module}, private to {owner}")
            if imported is not None and _private(imported) and module != name:
                wrong.append(f"{name} imports {imported} from {module}")
    assert not wrong, "\n".join(wrong)


def test_the_triton_kernels_import_only_themselves_and_the_ops():
    wrong = [f"{name} imports {module}" for path, name, _ in _library_modules() if name.startswith("ser_fast.kernels")
             for module, _ in _imports(path) if not module.startswith(("ser_fast.kernels", "ser_fast.ops"))]
    assert not wrong, "\n".join(wrong)


def test_only_the_registry_lists_the_model_kinds_or_compares_a_model_to_a_kind():
    kinds = set(kind_names())
    wrong = []
    for path, name, _ in _library_modules():
        if name == "ser_fast.runs.registry":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                named = {e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in kinds}
                if len(named) >= 2:
                    wrong.append(f"{name}:{node.lineno} lists kinds {sorted(named)}")
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                if any(isinstance(s, ast.Constant) and s.value in kinds for s in sides) and any(
                        isinstance(s, ast.Attribute) and s.attr in ("model", "kind") for s in sides):
                    wrong.append(f"{name}:{node.lineno} compares a model kind to a string")
    assert not wrong, "\n".join(wrong)
