"""The project's import graph, read from the source (no module is imported): which project modules a module can
import at run time (function-level imports and parent packages included), and from it each DVC stage's exact code
deps. ``tools/dvc_code_deps.py`` rewrites ``dvc.yaml`` with them, ``tests/test_structure.py`` checks them, and the
MLflow Model of a generator packages exactly the closure of its entry point (so the register stage depends on the
model's code, not on the whole library)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]  # the repository (or site-packages) root
PACKAGES = ("srgan_lib", "pipelines")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module an imported name lives in (``srgan_lib.metrics.NAMES`` -> ``srgan_lib.metrics``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _runtime_nodes(node: ast.AST, typing: bool = False):  # type: ignore[no-untyped-def]
    """Every node under ``node`` except the bodies of ``if TYPE_CHECKING:`` (annotations only, never imported), which
    ``typing`` includes."""
    for child in ast.iter_child_nodes(node):
        if not typing and isinstance(child, ast.If) and getattr(child.test, "id", getattr(child.test, "attr", "")) \
                == "TYPE_CHECKING":
            yield from (n for c in child.orelse for n in [c, *_runtime_nodes(c)])
            continue
        yield child
        yield from _runtime_nodes(child)


def _imports(node: ast.AST, here: str, typing: bool = False) -> set[str]:
    """Project modules imported anywhere under ``node`` at run time (module level and inside functions alike; with
    ``typing``, under ``if TYPE_CHECKING:`` too)."""
    found = set()
    for n in [node, *_runtime_nodes(node, typing)]:
        names: list[str] = []
        if isinstance(n, ast.Import):
            names = [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:  # relative import
                pkg = here if MODULES[here].name == "__init__.py" else here.rpartition(".")[0]
                for _ in range(n.level - 1):
                    pkg = pkg.rpartition(".")[0]
                base = f"{pkg}.{base}" if base else pkg
            names = [f"{base}.{a.name}" for a in n.names] + [base]
        for name in names:
            mod = _resolve(name)
            if mod and mod != here:
                found.add(mod)
    return found


GRAPH = {name: _imports(ast.parse(path.read_text(encoding="utf-8")), name) for name, path in MODULES.items()}
# with the annotation-only imports: a cycle there is still two modules that cannot be understood apart
TYPING_GRAPH = {name: _imports(ast.parse(path.read_text(encoding="utf-8")), name, typing=True)
                for name, path in MODULES.items()}


def _packages_of(mod: str) -> set[str]:
    """The packages Python runs before ``mod`` (``a.b.c`` imports ``a`` and ``a.b`` first), where they have code."""
    parts = mod.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in MODULES}


def _closure(start: set[str]) -> set[str]:
    """Every project module importing ``start`` can run: their imports, transitively, and their parent packages."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        mod = todo.pop()
        if mod not in seen:
            seen.add(mod)
            todo.extend(GRAPH[mod] | _packages_of(mod))
    return seen


def _stages() -> dict[str, dict]:
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return {name: (s["do"] if "foreach" in s else s) for name, s in spec.items()}




def _entry_module(cmd: str) -> str:
    words = cmd.split()
    assert words[:2] == ["python", "-m"] and words[2].startswith("srgan_lib.commands."), (
        f"a stage runs its command module (python -m srgan_lib.commands.NAME), not {' '.join(words[:3])}")
    return words[2]


def _code_deps(modules: set[str]) -> list[str]:
    """The dvc.yaml code deps naming exactly ``modules``: a package folder where every module under it is one of
    them (the outermost such folder), else the files."""
    files = {MODULES[m].relative_to(ROOT).as_posix() for m in modules if m.startswith("srgan_lib")}
    every = {p.relative_to(ROOT).as_posix() for p in MODULES.values()}
    deps = set(files)
    for folder in sorted({str(Path(f).parent) for f in files} - {"srgan_lib"}, key=len):
        under = {f for f in every if f.startswith(folder + "/")}
        if under <= files and not any(folder.startswith(d + "/") for d in deps):
            deps = {d for d in deps if not d.startswith(folder + "/")} | {folder}
    return sorted(deps)


def expected_code_deps() -> dict[str, list[str]]:
    """Stage -> the code deps its command module's import closure gives (plus the MLflow Model's code where the
    stage can log one: :func:`stage_closure`)."""
    return {name: _code_deps(stage_closure(_entry_module(stage["cmd"]))) for name, stage in _stages().items()}


# The entry file of a generator's MLflow Model: MLflow loads it by path (never imported by name), so a stage that can
# log a model (its closure holds MODEL_LOGGER) runs it too, and the model packages exactly its closure.
MODEL_LOGGER = "srgan_lib.registry.mlflow_model"
MODEL_ENTRY = "srgan_lib.registry.mlflow_model_code"


def stage_closure(entry: str) -> set[str]:
    """The project modules a stage running ``entry`` runs: its closure, plus the MLflow Model's code where it can
    log one."""
    mods = _closure({entry})
    return mods | _closure({MODEL_ENTRY}) if MODEL_LOGGER in mods else mods


def model_code_files() -> list[Path]:
    """The library files a generator's MLflow Model carries (``code/srgan_lib``): its entry point's closure."""
    return sorted(MODULES[m] for m in _closure({MODEL_ENTRY}) if m.startswith("srgan_lib"))


def _listed_code_deps(stage: dict) -> list[str]:
    return sorted(d for d in stage.get("deps", []) if d.split("/")[0] == "srgan_lib")


def fix_dvc_yaml() -> list[str]:
    """Rewrite each stage's code deps in dvc.yaml (the srgan_lib lines of its deps list) to the expected ones,
    keeping everything else as written; returns the stages changed."""
    path = ROOT / "dvc.yaml"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    expected, stages = expected_code_deps(), _stages()
    changed, out, i, current = [], [], 0, None
    while i < len(lines):
        line = lines[i]
        top = re.match(r"^  ([A-Za-z_]\w*):", line)
        if top:
            current = top.group(1)
        stripped = line.strip()
        if current in expected and stripped.startswith("- srgan_lib"):
            indent = line[: len(line) - len(line.lstrip())]
            j = i
            while j < len(lines) and lines[j].strip().startswith("- srgan_lib"):
                j += 1
            new = [f"{indent}- {d}\n" for d in expected[current]]
            if _listed_code_deps(stages[current]) != expected[current]:
                changed.append(current)
            out += new
            i = j
            continue
        out.append(line)
        i += 1
    path.write_text("".join(out), encoding="utf-8")
    return changed


