"""The project's structure, checked from the source: no import cycles, the library never imports the CLI, and every
DVC stage depends on every project module its command can import (so `dvc repro` never keeps a stale result)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

from srgan_lib.orchestration.imports import (
    GRAPH,
    MODULES,
    PACKAGES,
    ROOT,
    TYPING_GRAPH,
    _closure,
    _code_deps,
    _listed_code_deps,
    _stages,
    expected_code_deps,
)


def test_the_import_graph_has_no_cycle() -> None:
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(mod: str) -> None:
        state[mod] = 1
        stack.append(mod)
        for dep in sorted(TYPING_GRAPH[mod]):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep):], dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[mod] = 2

    for mod in sorted(TYPING_GRAPH):
        if mod not in state:
            visit(mod)
    assert not cycles, "import cycles (TYPE_CHECKING imports included): " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_module_is_over_400_lines() -> None:
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in MODULES.items()}
    assert not {n: s for n, s in sizes.items() if s > 400}, "split these by concern"


def test_the_library_and_the_flows_never_import_the_cli() -> None:
    offenders = sorted(m for m, deps in TYPING_GRAPH.items() if "srgan_lib.cli" in deps)
    assert not offenders, f"modules importing srgan_lib.cli (move what they need into the library): {offenders}"


def test_the_graph_sees_function_level_imports() -> None:
    # the checker itself: the commands import the library inside their run functions only
    assert "srgan_lib.evaluation.stage" in GRAPH["srgan_lib.commands.evaluate"]
    assert "srgan_lib.training.stage" in GRAPH["srgan_lib.commands.train"]


# --------------------------------------------------------------------------------------------------- DVC code deps


def test_every_dvc_stage_depends_on_exactly_the_code_its_entry_imports() -> None:
    stages = _stages()
    wrong = {name: {"missing": sorted(set(want) - set(_listed_code_deps(stages[name]))),
                    "extra": sorted(set(_listed_code_deps(stages[name])) - set(want))}
             for name, want in expected_code_deps().items() if _listed_code_deps(stages[name]) != want}
    assert not wrong, f"dvc.yaml code deps differ from the entries' import closures (python tools/dvc_code_deps.py " \
                      f"rewrites them): {wrong}"


def test_no_stage_depends_on_the_cli_the_upscaler_or_the_report_unless_it_runs_them() -> None:
    deps = expected_code_deps()
    for name in ("train_psnr", "train_gan"):
        code = deps[name]
        assert not [d for d in code if d == "srgan_lib/cli.py" or d.split("/")[1] in ("inference", "report",
                                                                                       "evaluation", "registry")], \
            (name, code)
    assert all("srgan_lib/cli.py" not in code for code in deps.values())
    assert "srgan_lib/report/markdown.py" in deps["report"]
    assert "srgan_lib/inference/upscaler.py" in deps["evaluate_models"]


def test_the_deps_check_sees_a_missing_module() -> None:
    # the closure follows function-level imports and parent packages
    modules = _closure({"srgan_lib.commands.evaluate"})
    assert {"srgan_lib.evaluation.stage", "srgan_lib.data.resize", "srgan_lib.commands", "srgan_lib"} <= modules
    assert "srgan_lib.metrics" in _closure({"srgan_lib.metrics.niqe"})
    assert _code_deps({"srgan_lib.metrics", "srgan_lib.metrics.niqe"}) == ["srgan_lib/metrics/__init__.py",
                                                                            "srgan_lib/metrics/niqe.py"]
    every_metric = {m for m in MODULES if m.startswith("srgan_lib.metrics")}
    assert _code_deps(every_metric) == ["srgan_lib/metrics"]


def test_one_definition_of_the_same_training_run() -> None:
    """Resume (config_hash), the remote exchange (trajectory_key) and dvc.yaml's params lists agree: every setting of
    the trajectory, and the output-only ones, re-run a training stage in DVC; nothing else does."""
    from pipelines import exchange
    from srgan_lib.training import stage, trajectory

    for name, var in (("train_psnr", "${item}"), ("train_gan", "${key}")):
        assert _stages()[name]["params"] == trajectory.dvc_params(var), name
    assert exchange.trajectory_key is trajectory.trajectory_key and stage.config_hash is trajectory.config_hash
    assert not set(trajectory.TRAIN_KEYS) & {k.split(".", 1)[1] for k in trajectory.OUTPUT_KEYS}
    from srgan_lib.config.params import load_params, override

    params = load_params(ROOT / "params.yaml", folders=False)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())  # the file, read independently of the settings models
    cfg, common = params.srresnet, params.train
    assert cfg.schedule == "cosine"
    blob = trajectory.trajectory(cfg, common, 4)
    assert blob == {"stage": {k: v for k, v in raw["srresnet"].items() if k not in ("val_every", "ckpt_every",
                                                                                      "log_every", "deliver")},
                    "train": {k: raw["train"][k] for k in trajectory.TRAIN_KEYS}, "scale": 4}  # iterations kept:
    # they shape a cosine schedule, not a multistep one
    multistep = override(params, ["srresnet.schedule=multistep"]).srresnet
    assert "iterations" not in trajectory.trajectory(multistep, common, 4)["stage"]
    speed = override(params, [f"train.fused_adam={not common.fused_adam}"])
    assert trajectory.trajectory_key(params, "srresnet") == trajectory.trajectory_key(speed, "srresnet")
    a, b = ({"data": "a"}, {"data": "b"})
    assert trajectory.config_hash(cfg, common, 4, a) != trajectory.config_hash(cfg, common, 4, b)


def test_training_stage_names_are_the_ones_dvc_expands() -> None:
    # dvc.yaml trains in two foreach groups; the library reads the section back from DVC's own names
    from srgan_lib.orchestration.dvc import stage_names, trained_section

    names = stage_names(ROOT)
    expected = {"srresnet": "train_psnr@srresnet", "rrdbnet": "train_psnr@rrdbnet", "srgan": "train_gan@srgan",
                "esrgan": "train_gan@esrgan", "realesrnet": "train_gan@realesrnet",
                "realesrgan": "train_gan@realesrgan"}
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
        "import srgan_lib.inference.upscaler, srgan_lib.models, srgan_lib.evaluation.measure\n"
        "import srgan_lib.evaluation.stage\n"
        "import srgan_lib.training.stage, srgan_lib.metrics.niqe, srgan_lib.metrics.ma, srgan_lib.cli\n"
        "from srgan_lib.inference.upscaler import Upscaler\n"
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
    code = ("import os, srgan_lib, srgan_lib.inference.upscaler, srgan_lib.tracking, srgan_lib.cli\n"
            "assert 'DO_NOT_TRACK' not in os.environ, 'import changed os.environ'\n"
            "srgan_lib.tracking.Tracker(None, 'x', 'y')  # tracking off: MLflow is not touched\n"
            "assert 'MLFLOW_DISABLE_TELEMETRY' not in os.environ\n"
            "srgan_lib.telemetry_off()\n"
            "assert os.environ['MLFLOW_DISABLE_TELEMETRY'] == 'true' and os.environ['DO_NOT_TRACK'] == 'true'\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]


def test_settings_choices_are_the_registries() -> None:
    """params.yaml's allowed values are the names the implementations register: a network, criterion, GAN type,
    kernel or baseline added there is allowed here, one removed there is refused here."""
    from srgan_lib import losses, models
    from srgan_lib.config import sections, training
    from srgan_lib.data import resize
    from srgan_lib.evaluation import measure as evaluation

    assert tuple(evaluation.BASELINES) == sections.BASELINE_NAMES
    assert set(training.GENERATORS) | set(training.DISCRIMINATORS) - {"none"} == set(models.SPECS)
    assert {n for n, s in models.SPECS.items() if s.output_range} == set(training.GENERATORS)
    assert ("none", *losses.CRITERIA) == training.LOSS_TYPES
    assert sections.KERNELS == resize.KERNELS


def test_no_module_reads_params_as_a_dict() -> None:
    """Stages read typed settings (params.train.amp), never string keys (params["train"]["amp"]): a typo is then an
    AttributeError at once, not a KeyError deep in a run."""
    pattern = re.compile(r"\b(params|cfg|common|stage_cfg)\[[\"'][a-z_]+[\"']\]")
    hits = [f"{p.relative_to(ROOT)}:{i}" for folder in ("srgan_lib", "pipelines", "benchmarks")
            for p in sorted((ROOT / folder).rglob("*.py"))
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert not hits, hits


def test_register_depends_on_the_models_code_not_the_whole_library() -> None:
    """The register stage packages a generator's MLflow Model, whose code is the import closure of its entry file:
    it depends on that (the upscaler, the networks), never on training, the report or the CLI."""
    from srgan_lib.orchestration.imports import MODEL_ENTRY, model_code_files

    deps = expected_code_deps()["register"]
    assert "srgan_lib" not in deps and "srgan_lib/inference/upscaler.py" in deps and "srgan_lib/registry" in deps
    # (the settings it reads with --params name the schedules of training/optim.py, nothing else of training)
    settings = {"srgan_lib/training/__init__.py", "srgan_lib/training/optim.py"}
    assert not [d for d in deps if d.split("/")[1] in ("training", "report", "cli.py", "metrics", "evaluation")
                and d not in settings], deps
    files = {f.relative_to(ROOT).as_posix() for f in model_code_files()}
    assert MODULES[MODEL_ENTRY].relative_to(ROOT).as_posix() in files and "srgan_lib/models/rrdbnet.py" in files
    assert all(any(f == d or f.startswith(d + "/") for d in deps) for f in files), "packaged code outside the deps"


def test_recipe_and_network_names_are_defined_once() -> None:
    """No table of recipes or networks written out anywhere but the places that own them: a literal tuple, list, set
    or dict (keys) naming two or more of them is a second definition that a new recipe or network would miss. The
    recipes live in params.yaml (`recipes`), the networks in their specs; only the papers' published rows and names
    (report/references.py) are keyed by the papers' methods."""
    names = {"srresnet", "srgan", "rrdbnet", "esrgan", "srgan_discriminator", "esrgan_discriminator"}
    allowed = {"srgan_lib.report.references"}
    found = []
    for mod, path in MODULES.items():
        if mod in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            items = (node.keys if isinstance(node, ast.Dict) else
                     node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [])
            hits = {k.value for k in items if isinstance(k, ast.Constant) and k.value in names}
            if len(hits) >= 2:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {sorted(hits)}")
    assert not found, found


def test_no_library_function_is_over_80_lines() -> None:
    """Long functions are cut into named steps (the issue's limit: 80 lines, docstring included)."""
    long = [f"{path.relative_to(ROOT)}:{node.name} {node.end_lineno - node.lineno + 1}"
            for mod, path in MODULES.items() if mod.startswith("srgan_lib")
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80]
    assert not long, long


def test_only_the_stated_modules_sit_flat_in_the_library() -> None:
    """Every step is a package; flat beside them only the CLI, the losses, MLflow tracking and the one device rule
    that training and inference share (hardware.py)."""
    flat = sorted(p.name for p in (ROOT / "srgan_lib").glob("*.py"))
    assert flat == ["__init__.py", "cli.py", "hardware.py", "losses.py", "tracking.py"], flat
