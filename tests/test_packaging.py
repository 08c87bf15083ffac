"""How ser_fast installs and imports: no folder of the repository shadows a dependency when Python
runs from the repository root (as `python -m pytest` and `python -m ser_fast.demo` do), every extra
imports, and the core install trains and runs CPU inference with none of the extras importable."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
# Import names of distributions whose name differs from what they install.
IMPORT_NAMES = {"kaldi-native-fbank": "kaldi_native_fbank", "pytest-xdist": "xdist", "import-linter": "importlinter"}


def _run_from_root(code: str, *, env_extra: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Run ``python -c code`` with the repository root as the working directory, so that sys.path[0]
    is the root, as it is for `python -m pytest` there."""
    env = {**os.environ, **(env_extra or {})}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr[-4000:]}"
    return done.stdout


def _importable_from_root() -> list[str]:
    """Top-level names that an import finds in the repository root: modules and regular packages."""
    return sorted(entry.stem if entry.is_file() else entry.name for entry in ROOT.iterdir()
                  if (entry.is_file() and entry.suffix == ".py") or (entry / "__init__.py").is_file())


def _is_the_projects(file: str, name: str) -> bool:
    path = Path(file).resolve()
    return path == ROOT / f"{name}.py" or path.is_relative_to(ROOT / name)


def _installed_elsewhere(name: str) -> list[str]:
    """Distributions other than ser_fast that install the top-level name."""
    return [d for d in importlib.metadata.packages_distributions().get(name, []) if d.replace("-", "_") != "ser_fast"]


@pytest.mark.parametrize("name", [n for n in _importable_from_root() if n != "ser_fast"], ids=str)
def test_no_repository_name_resolves_into_the_project_when_a_dependency_has_it(name):
    if not _installed_elsewhere(name):
        pytest.skip(f"no installed distribution provides {name!r}")
    out = _run_from_root(f"import {name}; print({name}.__file__)")
    assert not _is_the_projects(out.strip(), name), f"`import {name}` from the root gave {out.strip()}"


def test_kernels_folder_is_installed_as_ser_fast_kernels():
    import ser_fast.kernels.moe as moe

    assert Path(moe.__file__).resolve().parent == ROOT / "kernels"


def test_a_regular_package_named_kernels_anywhere_on_sys_path_wins_over_the_folder(tmp_path):
    """Whichever `kernels` distribution is installed: one found after the repository root on
    sys.path is the one `import kernels` gives, with its submodules."""
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "__init__.py").write_text("WHO = 'dependency'\n")
    (tmp_path / "kernels" / "layers.py").write_text("WHAT = 'layers'\n")
    out = _run_from_root("import kernels, kernels.layers; print(kernels.WHO, kernels.layers.WHAT, kernels.__file__)",
                         env_extra={"PYTHONPATH": str(tmp_path)})
    assert out.startswith("dependency layers "), out
    assert Path(out.split()[2]).is_relative_to(tmp_path), out


def test_kernels_is_not_importable_from_the_root_when_nothing_else_provides_it():
    """With site-packages off (-S) no `kernels` exists but the folder: the import fails as if it were absent."""
    done = subprocess.run([sys.executable, "-S", "-c", "import kernels"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert "ModuleNotFoundError: No module named 'kernels'" in done.stderr, done.stderr


def test_the_root_on_sys_path_twice_under_two_spellings_does_not_recurse(tmp_path):
    """A symlink to the root after the root itself: the hand-over must not find the folder again."""
    (tmp_path / "link").symlink_to(ROOT)
    done = subprocess.run([sys.executable, "-S", "-c", "import kernels"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tmp_path / "link")}, timeout=60)
    assert "ModuleNotFoundError: No module named 'kernels'" in done.stderr, done.stderr[-2000:]


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="the ssl extra is not installed")
def test_transformers_builds_wavlm_from_the_repository_root():
    """The clash as users met it: transformers 5 imports Hugging Face's `kernels` package, which the
    repository's `kernels/` folder used to shadow."""
    out = _run_from_root("""
        import sys
        import torch
        from transformers import WavLMConfig, WavLMModel

        config = WavLMConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                             conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=8,
                             num_conv_pos_embedding_groups=2)
        hidden = WavLMModel(config).eval()(torch.randn(1, 4000)).last_hidden_state
        print("hidden", tuple(hidden.shape))
        try:
            import kernels
            print("kernels", kernels.__file__)
        except ModuleNotFoundError:
            print("kernels none")
    """)
    assert "hidden (1, " in out, out
    where = next(line for line in out.splitlines() if line.startswith("kernels ")).split(" ", 1)[1]
    if _installed_elsewhere("kernels"):
        assert where != "none" and not _is_the_projects(where, "kernels"), f"`import kernels` gave {where}"
    else:
        assert where == "none", f"`import kernels` gave {where} though no distribution provides it"


CAPABILITIES = sorted(set(EXTRAS) - {"all", "test", "bench"})


@pytest.mark.parametrize("extra", sorted(set(EXTRAS) - {"all"}), ids=str)
def test_every_extra_is_installed_and_imports(extra):
    """The suite's install (`.[test,bench]`) holds every extra; each requirement imports."""
    modules = []
    for text in EXTRAS[extra]:
        requirement = Requirement(text)
        if requirement.name.replace("-", "_") == "ser_fast":
            continue
        importlib.metadata.version(requirement.name)  # raises PackageNotFoundError when it is missing
        modules.append(IMPORT_NAMES.get(requirement.name, requirement.name.replace("-", "_")))
    _run_from_root(f"import {', '.join(modules)}")


def test_all_and_test_hold_every_capability_extra():
    for extra in ("all", "test"):
        included = {name for text in EXTRAS[extra] for name in Requirement(text).extras
                    if Requirement(text).name.replace("-", "_") == "ser_fast"}
        assert included >= set(CAPABILITIES) or "all" in included, f"{extra} holds {sorted(included)}"
    assert {n for t in EXTRAS["all"] for n in Requirement(t).extras} == set(CAPABILITIES)


def test_core_dependencies_hold_none_of_the_extras():
    core = {Requirement(t).name for t in PYPROJECT["project"]["dependencies"]}
    heavy = {"transformers", "triton", "onnx", "onnxscript", "onnxruntime", "pytest", "pytest-xdist", "mbpls",
             "kaldi-native-fbank", "pesq", "pystoi", "librosa"}
    assert not core & heavy, f"core dependencies that belong in an extra: {sorted(core & heavy)}"


def test_core_install_trains_and_predicts_with_no_extra_importable(tmp_path):
    """Every optional module is made unimportable; ser_fast still imports, computes features with its
    C++ front-end, trains a tiny DSNet, saves it, and labels a wav file through EmotionRecognizer."""
    blocked = sorted({IMPORT_NAMES.get(Requirement(t).name, Requirement(t).name.replace("-", "_"))
                      for extra, texts in EXTRAS.items() for t in texts
                      if Requirement(t).name.replace("-", "_") != "ser_fast"} | {"kernels", "onnxruntime"})
    out = _run_from_root(f"""
        import sys

        # None in sys.modules is how Python marks a module absent: importing it raises
        # ModuleNotFoundError and importlib.util.find_spec returns None, as if it were not installed.
        BLOCKED = {blocked!r}
        sys.modules.update(dict.fromkeys(BLOCKED))

        import numpy as np
        import soundfile as sf
        import ser_fast
        from ser_fast.data.loaders import load_corpus
        from ser_fast.data.synthetic import synthesize_corpus
        from ser_fast.inference.recognizer import EmotionRecognizer
        from ser_fast.runs.config import TrainConfig
        from ser_fast.training.run import train_run

        root = synthesize_corpus({str(tmp_path / 'corpus')!r}, speakers=4, per_class=1, seed=0)
        corpus = load_corpus("iemocap", root)
        run = train_run(corpus, {str(tmp_path / 'run')!r}, TrainConfig(model="dsnet", epochs=1, max_frames=32,
                        precision="fp32"), folds=[0])
        recognizer = EmotionRecognizer.from_pretrained({str(tmp_path / 'run')!r})
        wav = str(corpus.utterances[0].path)
        prediction = recognizer.predict([wav])[0]
        assert prediction.error is None, prediction.error
        print("label", prediction.label)
        print("loaded", sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED and sys.modules[m] is not None))
    """)
    assert "label " in out, out
    assert "loaded []" in out, out
