"""The project's structure, checked from the source: no import cycles, the library never imports the CLI, and every
DVC stage depends on every project module its command can import (so `dvc repro` never keeps a stale result)."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
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


def _runtime_nodes(node: ast.AST):  # type: ignore[no-untyped-def]
    """Every node under ``node`` except the bodies of ``if TYPE_CHECKING:`` (annotations only, never imported)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and getattr(child.test, "id", getattr(child.test, "attr", "")) == "TYPE_CHECKING":
            yield from (n for c in child.orelse for n in [c, *_runtime_nodes(c)])
            continue
        yield child
        yield from _runtime_nodes(child)


def _imports(node: ast.AST, here: str) -> set[str]:
    """Project modules imported anywhere under ``node`` at run time (module level and inside functions alike)."""
    found = set()
    for n in [node, *_runtime_nodes(node)]:
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


def _closure(start: set[str]) -> set[str]:
    seen, todo = set(), list(start)
    while todo:
        mod = todo.pop()
        if mod not in seen:
            seen.add(mod)
            todo.extend(GRAPH[mod])
    return seen


def test_the_import_graph_has_no_cycle() -> None:
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(mod: str) -> None:
        state[mod] = 1
        stack.append(mod)
        for dep in sorted(GRAPH[mod]):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep):], dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[mod] = 2

    for mod in sorted(GRAPH):
        if mod not in state:
            visit(mod)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_library_and_the_flows_never_import_the_cli() -> None:
    offenders = sorted(m for m, deps in GRAPH.items() if "srgan_lib.cli" in deps)
    assert not offenders, f"modules importing srgan_lib.cli (move what they need into the library): {offenders}"


def test_the_graph_sees_function_level_imports() -> None:
    # the checker itself: cli imports the stage modules inside its command functions only
    assert "srgan_lib.stages.evaluate" in GRAPH["srgan_lib.cli"]
    assert "srgan_lib.training.engine" in GRAPH["srgan_lib.cli"]


# --------------------------------------------------------------------------------------------------- DVC code deps


def _handler_imports(command: list[str]) -> set[str]:
    """Project modules the CLI handler of ``srgan COMMAND...`` can import: cli.py's module-level imports, the
    handler's own and those of the cli.py helpers it calls (transitively)."""
    tree = ast.parse(MODULES["srgan_lib.cli"].read_text(encoding="utf-8"))
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    words = [w for w in command if not w.startswith("-") and "$" not in w][:2]
    name = "cmd_" + "_".join(words)
    if name not in functions:
        name = "cmd_" + words[0]
    assert name in functions, f"no handler {name} in cli.py for `srgan {' '.join(command)}`"
    found = set()
    for stmt in tree.body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            found |= _imports(stmt, "srgan_lib.cli")
    seen, todo = set(), [name]
    while todo:
        fn = todo.pop()
        if fn in seen:
            continue
        seen.add(fn)
        found |= _imports(functions[fn], "srgan_lib.cli")
        todo += [n.func.id for n in ast.walk(functions[fn])
                 if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in functions]
    return found


def _stages() -> dict[str, dict]:
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return {name: (s["do"] if "foreach" in s else s) for name, s in spec.items()}


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)


def test_every_dvc_stage_depends_on_the_code_it_runs() -> None:
    missing = {}
    for name, stage in _stages().items():
        words = stage["cmd"].split()
        assert words[0] == "srgan", f"stage {name}: the command is not the srgan CLI"
        modules = _closure(_handler_imports(words[1:])) | {"srgan_lib.cli"}
        code = {MODULES[m] for m in modules if m.startswith("srgan_lib")}
        lacking = sorted(p.relative_to(ROOT).as_posix() for p in code if not _covered(p, stage.get("deps", [])))
        if lacking:
            missing[name] = lacking
    assert not missing, f"dvc.yaml stages lack code deps they import: {missing}"


def test_the_deps_check_sees_a_missing_module() -> None:
    # the check above fails for a stage whose deps omit what its command imports
    modules = _closure(_handler_imports(["evaluate", "--model", "bicubic"]))
    assert "srgan_lib.stages.evaluate" in modules and "srgan_lib.resize" in modules
    assert not _covered(MODULES["srgan_lib.resize"], ["srgan_lib/evaluation.py", "srgan_lib/metrics"])
    assert _covered(MODULES["srgan_lib.metrics.niqe"], ["srgan_lib/metrics"])


def test_training_stage_names_are_the_ones_dvc_expands() -> None:
    # dvc.yaml trains in two foreach groups; the library reads the section back from DVC's own names
    from srgan_lib.pipeline import stage_names, trained_section

    names = stage_names(ROOT)
    expected = {"srresnet": "train_psnr@srresnet", "rrdbnet": "train_psnr@rrdbnet", "srgan": "train_gan@srgan",
                "esrgan": "train_gan@esrgan"}
    for section, stage in expected.items():
        assert stage in names and trained_section(stage) == section
    assert sorted(n for n in names if n.startswith("train")) == sorted(expected.values())
    assert trained_section("evaluate_models@esrgan") is None and trained_section("train_gan") is None


def test_the_stage_that_wrote_a_file_is_found_in_dvc_lock(tmp_path: Path) -> None:
    from srgan_lib.tracking import dvc_lock_hash, dvc_lock_stage_of

    lock = tmp_path / "dvc.lock"
    lock.write_text("schema: '2.0'\nstages:\n  train_gan@esrgan:\n    cmd: srgan train esrgan\n    outs:\n"
                    "    - path: models/esrgan.pth\n      md5: 0123\n    - path: runs/esrgan/val\n"
                    "  report:\n    cmd: srgan report\n", encoding="utf-8")
    assert dvc_lock_stage_of("models/esrgan.pth", lock) == "train_gan@esrgan"
    assert dvc_lock_stage_of(Path("runs/esrgan/val"), lock) == "train_gan@esrgan"
    assert dvc_lock_stage_of("models/srgan.pth", lock) is None
    assert dvc_lock_stage_of("models/esrgan.pth", tmp_path / "absent.lock") is None
    assert len(dvc_lock_hash("train_gan@esrgan", lock)) == 16 and dvc_lock_hash("nope", lock) == "none"
    lock.write_text("stages: [unclosed\n", encoding="utf-8")
    assert dvc_lock_stage_of("models/esrgan.pth", lock) is None and dvc_lock_hash("report", lock) == "unreadable"
    # the project's own lock: each generator was written by its training stage
    assert dvc_lock_stage_of("models/esrgan.pth", ROOT / "dvc.lock") == "train_gan@esrgan"
    assert dvc_lock_stage_of("models/srresnet.pth", ROOT / "dvc.lock") == "train_psnr@srresnet"


# ------------------------------------------------------------------------------------------------------- packaging


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level third-party module -> the project modules importing it (anywhere in the file)."""
    import sys

    found: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            mods = ([a.name for a in n.names] if isinstance(n, ast.Import) else
                    [n.module] if isinstance(n, ast.ImportFrom) and n.module and not n.level else [])
            for m in mods:
                top = m.split(".")[0]
                if top not in sys.stdlib_module_names and top not in PACKAGES:
                    found.setdefault(top, set()).add(name)
    return found


def _declared() -> dict[str, set[str]]:
    """Extra ('' for the core) -> normalised distribution names, from pyproject.toml."""
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    groups = {"": project["dependencies"], **project["optional-dependencies"]}

    def norm(req: str) -> str:
        return re.split(r"[<>=!\[; ]", req, maxsplit=1)[0].lower().replace("_", "-")

    return {extra: {norm(r) for r in reqs} for extra, reqs in groups.items()}


def test_every_direct_import_is_declared() -> None:
    from importlib.metadata import packages_distributions

    dists = packages_distributions()
    declared = set().union(*_declared().values())
    undeclared = {}
    for top, users in _third_party_imports().items():
        names = {d.lower().replace("_", "-") for d in dists.get(top, [top])}
        if not names & declared:
            undeclared[top] = sorted(users)
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_the_core_library_imports_without_the_workflow_tools() -> None:
    import subprocess
    import sys

    declared = _declared()
    assert not {"dvc", "mlflow", "prefect"} & declared[""], "workflow tools must be an extra, not core"
    # a fresh interpreter in which dvc, mlflow, prefect, pandas and matplotlib cannot be imported
    code = (
        "import sys\n"
        "for m in ('dvc', 'mlflow', 'prefect', 'pandas', 'matplotlib'): sys.modules[m] = None\n"
        "import srgan_lib.upscale, srgan_lib.models, srgan_lib.evaluation, srgan_lib.stages.evaluate\n"
        "import srgan_lib.training.engine, srgan_lib.metrics.niqe, srgan_lib.metrics.ma, srgan_lib.cli\n"
        "from srgan_lib.upscale import Upscaler\n"
        "from srgan_lib.models import build_model\n"
        "import numpy as np\n"
        "up = Upscaler(build_model('srresnet', num_block=1, num_feat=8), tile=0, value_range=(-1.0, 1.0))\n"
        "assert up.upscale_array(np.zeros((8, 8, 3), np.uint8)).shape == (32, 32, 3)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]


def test_importing_the_library_leaves_the_environment_alone() -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("DO_NOT_TRACK", "MLFLOW_DISABLE_TELEMETRY",
                                                               "PREFECT_SERVER_ANALYTICS_ENABLED", "DVC_NO_ANALYTICS")}
    code = ("import os, srgan_lib, srgan_lib.upscale, srgan_lib.tracking, srgan_lib.cli\n"
            "assert 'DO_NOT_TRACK' not in os.environ, 'import changed os.environ'\n"
            "srgan_lib.tracking.Tracker(None, 'x', 'y')  # tracking off: MLflow is not touched\n"
            "assert 'MLFLOW_DISABLE_TELEMETRY' not in os.environ\n"
            "srgan_lib.telemetry_off()\n"
            "assert os.environ['MLFLOW_DISABLE_TELEMETRY'] == 'true' and os.environ['DO_NOT_TRACK'] == 'true'\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
