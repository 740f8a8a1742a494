"""The pipeline end to end in a temporary copy of the repository (micro profile), with real components: `srgan repro`
(what `make run` calls) and `dvc repro`, a Ctrl-C in the middle of training, a real Prefect server + process worker
running a deployment, a real `mlflow server` answering the REST API, and `dvc exp run -S`.

The tests share one copy and run in file order (each builds on the state the previous one left).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from srgan_lib import tracking
from tests.conftest import free_port, micro_repo
from tests.conftest import mlflow_server as start_mlflow_server

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
MODELS = ("srresnet", "srgan", "rrdbnet", "esrgan", "realesrnet", "realesrgan")
TRAINING = {"srresnet": "train_psnr@srresnet", "srgan": "train_gan@srgan", "rrdbnet": "train_psnr@rrdbnet",
            "esrgan": "train_gan@esrgan", "realesrnet": "train_gan@realesrnet",
            "realesrgan": "train_gan@realesrgan"}  # dvc.yaml's foreach groups
ALL_STAGES = ["embedded", "lists", "degrade", "store", "realworld", "evaluate_baselines@bicubic",
              "evaluate_baselines@nearest", "interpolate", *TRAINING.values(),
              *(f"evaluate_models@{m}" for m in MODELS), "evaluate_interp", "report",
              *(f"register@{m}" for m in MODELS)]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "SRGAN_PARENT_RUN_ID", "PREFECT_API_URL", "PREFECT_HOME")}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env['PATH']}", "DVC_NO_ANALYTICS": "1", **extra}


def _sh(cmd: list[str], cwd: Path, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=900)
    if check:
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _ran(output: str) -> list[str]:
    return sorted(line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage"))


def _registry(repo: Path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{repo / 'mlflow' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _runs(repo: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{repo / 'mlflow' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("srgan")
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"], max_results=1000)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    dest = micro_repo(tmp_path_factory.mktemp("repo"))
    # SRResNet long enough (a few seconds) to be interrupted in the middle
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["srresnet"].update(iterations=300, ckpt_every=10, val_every=100)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


def test_bad_params_stop_before_any_stage(repo):
    bad = _sh([str(BIN / "srgan"), "repro", "--set", "interpolate.alpha=[0, 1.5]"], repo, check=False)
    assert bad.returncode == 2
    assert "interpolate.alpha" in bad.stderr and "Running stage" not in bad.stdout + bad.stderr
    original = (repo / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["esrgan"]["hr_size"] = 126  # not divisible by the scale
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        bad = _sh([str(BIN / "srgan"), "repro"], repo, check=False)
    finally:
        (repo / "params.yaml").write_text(original)
    assert bad.returncode == 2
    assert "'esrgan.hr_size'" in bad.stderr and "divisible" in bad.stderr
    assert not (repo / "data" / "raw").exists() and not (repo / "dvc.lock").exists()


def _terminal_sigint() -> None:
    """Start the child as a shell would: Ctrl-C (SIGINT) at its default, unblocked, whatever signal state the test
    process inherited or earlier tests left (in the full suite the child otherwise ignored the SIGINT below)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_interrupted_repro_resumes_from_completed_stages(repo, tmp_path):
    log = tmp_path / "first.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([str(BIN / "srgan"), "repro"], cwd=repo, env=_env(), stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_terminal_sigint)
    ckpts = repo / "runs" / "srresnet" / "checkpoints"
    deadline = time.monotonic() + 600
    while not list(ckpts.glob("iter_*.pt")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"repro ended before training was interrupted:\n{log.read_text()}"
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: SIGINT to the foreground group
    assert proc.wait(timeout=120) == 130, log.read_text()
    first = log.read_text()
    assert "interrupted" in first
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert {"embedded", "lists", "degrade"} <= set(lock) and "train_psnr@srresnet" not in lock
    status = {r.info.run_name: r.info.status for r in _runs(repo)}
    assert status["srresnet"] == "KILLED" and status["repro"] == "KILLED"

    second = _sh([str(BIN / "srgan"), "repro"], repo)
    out = second.stdout + second.stderr
    assert "Stage 'embedded' didn't change, skipping" in out
    assert "Running stage 'embedded'" not in out and "Running stage 'train_psnr@srresnet'" in out
    assert "srresnet: resuming from" in out
    assert sorted(set(_ran(first)) | set(_ran(out))) == sorted(ALL_STAGES)
    assert "paper PSNR-Y/SSIM-Y" in out and "MLflow UI:  make mlflow-ui" in out  # the end-of-run summary
    assert "models:/srgan-srresnet@champion" in out and "models:/srgan-esrgan@" in out  # ... with the registry

    assert len(list((repo / "data/raw/skimage").glob("*.png"))) == 9
    assert len(list((repo / "data/lr/train/X4").glob("*.png"))) == 9
    metrics = json.loads((repo / "metrics/bicubic.json").read_text())
    assert metrics["bicubic"]["Set5"]["psnr_y"] == pytest.approx(28.42, abs=0.05)
    assert metrics["bicubic"]["Set14"]["psnr_y"] == pytest.approx(26.00, abs=0.15)
    for model in MODELS:
        assert (repo / "models" / f"{model}.pth").is_file()
        assert json.loads((repo / f"metrics/{model}.json").read_text())[model]["Set5"]["n_images"] == 5
    assert len(list((repo / "models" / "interp").glob("interp_*.pth"))) == 3
    assert "report: reports/report/report.md" in out
    report = (repo / "reports/report/report.md").read_text()
    assert "| Bicubic (paper)" in report and "| ESRGAN (ours)" in report and "Interp. α=0.50" in report
    assert len(list((repo / "reports/report/figures").glob("Set14_*.png"))) == 14
    # the real-world sets: every method on them, in a section and figures of their own (degraded LR, models, HR)
    assert len(list((repo / "data/realworld/Set14-RW/LR/X4").glob("*.png"))) == 14
    assert metrics["bicubic"]["Set14-RW"]["psnr_y"] < metrics["bicubic"]["Set14"]["psnr_y"] - 2
    assert "## Real-world sets" in report and "| ESRGAN " in report.split("## Real-world sets")[1]
    assert len(list((repo / "reports/report/figures").glob("Set14-RW_*.png"))) == 14
    interp = json.loads((repo / "metrics/interp.json").read_text())
    for end, model in (("interp_0.00", "rrdbnet"), ("interp_1.00", "esrgan")):  # the sweep's ends are the models
        assert interp[end]["Set5"] == json.loads((repo / f"metrics/{model}.json").read_text())[model]["Set5"]
    shown = _sh([str(BIN / "dvc"), "metrics", "show", "--json"], repo).stdout
    assert "psnr_y" in shown and "Set14" in shown and "final_losses" in shown

    again = _sh([str(BIN / "dvc"), "repro"], repo).stdout
    assert "Running stage" not in again


def test_another_clone_reproduces_the_same_bytes(repo, tmp_path_factory):
    """Outputs are a function of the inputs: a second clone at another path, running the data stages and the
    SRResNet/SRGAN training uninterrupted, records the same dvc.lock entries as the first (whose SRResNet stage was
    interrupted and resumed): no mtimes, wall-clock times, run ids or absolute paths in any DVC output."""
    other = micro_repo(tmp_path_factory.mktemp("a-second-clone-at-a-longer-path"))
    (other / "params.yaml").write_text((repo / "params.yaml").read_text())
    targets = ["train_gan@srgan"]
    _sh([str(BIN / "dvc"), "repro", *targets], other)
    ours = yaml.safe_load((other / "dvc.lock").read_text())["stages"]
    theirs = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert {"embedded", "lists", "degrade", "store", "train_psnr@srresnet", "train_gan@srgan"} <= set(ours)
    different = {name: [k for k in entry if entry[k] != theirs[name].get(k)] for name, entry in ours.items()
                 if entry != theirs[name]}
    assert not different, f"stages whose dvc.lock entries differ between the clones: {different}"


def test_a_change_outside_a_stages_code_leaves_it_up_to_date(repo):
    """Editing the CLI's help, the upscaler's TIFF writer or the report's plots re-runs no training stage (the price
    of a change is the stages that run the changed code): `dvc status` names the report only. The registrations
    depend on the MLflow Model's code (the upscaler, the networks), no longer on the whole library."""
    tiff, plot = "TIFF_STRUCTURE_TAGS = frozenset({", "def save_figure(fig, path: Path) -> Path:"
    edits = {"srgan_lib/cli.py": ("Train, evaluate and serve", "Train, evaluate and deploy"),
             "srgan_lib/inference/files.py": (tiff, tiff + "253, "),
             "srgan_lib/report/figures.py": (plot, plot + "  # edited")}
    originals = {f: (repo / f).read_text() for f in edits}
    try:
        for f, (old, new) in edits.items():
            assert old in originals[f], f
            (repo / f).write_text(originals[f].replace(old, new, 1))
        changed = set(json.loads(_sh([str(BIN / "dvc"), "status", "--json"], repo).stdout))
    finally:
        for f, text in originals.items():
            (repo / f).write_text(text)
    # only the stage that runs the edited code: the report (no stage writes TIFF files or runs the CLI)
    assert changed == {"report"}, changed
    assert json.loads(_sh([str(BIN / "dvc"), "status", "--json"], repo).stdout) == {}  # restored: all up to date


def test_stage_runs_nest_under_the_pipeline_run(repo):
    runs = _runs(repo)
    first, second = [r for r in runs if r.info.run_name == "repro"]
    assert (first.info.status, second.info.status) == ("KILLED", "FINISHED")
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == second.info.run_id}
    assert {"srgan", "rrdbnet", "esrgan", "evaluate/esrgan", "evaluate/srresnet"} <= set(children)
    srresnet = [r for r in runs if r.info.run_name == "srresnet"]
    assert len(srresnet) == 1 and srresnet[0].info.status == "FINISHED"  # the resumed training reopened its run
    assert srresnet[0].data.tags["mlflow.parentRunId"] == first.info.run_id
    evaluated = [r for r in runs if r.data.tags.get("srgan.kind") == "evaluation"]
    interp = {f"interp_{a:.2f}" for a in (0, 0.5, 1)}
    assert {r.data.tags["srgan.model"] for r in evaluated} == {"bicubic", "nearest", *MODELS, *interp}
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{repo / 'mlflow' / 'mlflow.db'}")
    artifacts = client.list_artifacts(children["report"].info.run_id, "report")
    assert {"report/report.md", "report/figures", "report/perception_distortion.png"} <= {a.path for a in artifacts}
    for r in evaluated:
        assert {"Set5/psnr_y", "Set5/ssim_y", "Set5/niqe", "Set14/psnr_y"} <= set(r.data.metrics)
        assert "Ma" in r.data.tags["unavailable.pi"]  # recorded as unavailable, never estimated
    # what the MLflow UI shows: a model-training experiment, datasets, validation images per step, per-image tables
    exp = client.get_experiment_by_name("srgan")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "dvc repro" in second.data.tags["mlflow.note.content"]
    esrgan = client.get_run(children["esrgan"].info.run_id)
    inputs = {(d.dataset.name, {t.key: t.value for t in d.tags}["mlflow.data.context"])
              for d in esrgan.inputs.dataset_inputs}
    assert inputs == {("train", "training"), ("Set5", "validation")}
    evaluation = client.get_run(children["evaluate/esrgan"].info.run_id)
    assert {d.dataset.name for d in evaluation.inputs.dataset_inputs} == {"Set5", "Set14", "Set5-RW", "Set14-RW"}
    assert "per_image.json" in {a.path for a in client.list_artifacts(evaluation.info.run_id)}
    assert any(a.path == "images" for a in client.list_artifacts(esrgan.info.run_id))  # log_image's folder
    # the register stages: every registered model, each version a logged MLflow Model of its training run
    for model in MODELS:
        record = json.loads((repo / "reports" / "registry" / f"{model}.json").read_text())
        version = client.get_model_version(f"srgan-{model}", record["version"])
        assert record["alias"] in version.aliases and record["alias"] in ("champion", "challenger")
        training = next(r for r in runs if r.info.run_name == model)
        assert version.run_id == training.info.run_id
        # the training run carries the hash of its own dvc.lock entry (written after it), the same as the version's
        lock_hash = tracking.dvc_lock_hash(TRAINING[model], repo / "dvc.lock")
        assert len(lock_hash) == 16 and version.tags["dvc_lock"] == lock_hash
        assert client.get_run(training.info.run_id).data.tags["dvc_lock_stage_hash"] == lock_hash
    for model in ("srresnet", "rrdbnet"):  # PSNR models: the first version is the champion
        assert str(client.get_model_version_by_alias(f"srgan-{model}", "champion").version) == "1"
    # the real-world recipes validate on Set5-RW and are gated on Set14-RW (register.realworld_set)
    realesrgan = client.get_run(children["realesrgan"].info.run_id)
    assert {(d.dataset.name, next(t.value for t in d.tags if t.key == "mlflow.data.context"))
            for d in realesrgan.inputs.dataset_inputs} == {("train", "training"), ("Set5-RW", "validation")}
    for model in ("realesrnet", "realesrgan"):
        record = json.loads((repo / "reports" / "registry" / f"{model}.json").read_text())
        assert client.get_model_version(f"srgan-{model}", record["version"]).tags["gate.test_set"] == "Set14-RW"


@pytest.fixture
def mlflow_server(repo):
    """A real `mlflow server` on the project's store."""
    with start_mlflow_server(repo / "mlflow" / "mlflow.db", repo) as url:
        yield url


def _rest(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_mlflow_server_answers_with_the_evaluation_metrics(repo, mlflow_server):
    api = f"{mlflow_server}/api/2.0/mlflow"
    exp = _rest(f"{api}/experiments/get-by-name?experiment_name=srgan")["experiment"]
    found = _rest(f"{api}/runs/search", {"experiment_ids": [exp["experiment_id"]],
                                         "filter": "tags.`srgan.kind` = 'evaluation'", "max_results": 100})
    by_model: dict[str, dict[str, float]] = {}
    for run in found["runs"]:
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        by_model.setdefault(tags["srgan.model"], {m["key"]: m["value"] for m in run["data"]["metrics"]})
    assert {"bicubic", "nearest", *MODELS} <= set(by_model)
    assert by_model["bicubic"]["Set5/psnr_y"] == pytest.approx(28.42, abs=0.05)  # the papers' bicubic row
    assert by_model["bicubic"]["Set14/psnr_y"] == pytest.approx(26.00, abs=0.15)
    assert by_model["bicubic"]["Set5/ssim_y"] == pytest.approx(0.8104, abs=0.002)
    for metrics in by_model.values():
        assert {"Set5/niqe", "Set14/ssim_y"} <= set(metrics)


def test_dvc_exp_run_of_one_esrgan_param_reruns_only_esrgan_and_downstream(repo):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "-c", "commit.gpgsign=false"]
    _sh([*git, "add", "-f", "metrics", "dvc.lock"], repo)
    _sh([*git, "commit", "-q", "-m", "baseline metrics"], repo)
    out = _sh([str(BIN / "dvc"), "exp", "run", "-S", "esrgan.gan.weight=1e-2"], repo).stdout
    assert _ran(out) == ["evaluate_interp", "evaluate_models@esrgan", "interpolate", "register@esrgan", "report",
                         "train_gan@esrgan"]
    diff = json.loads(_sh([str(BIN / "dvc"), "metrics", "diff", "--json"], repo).stdout)
    assert "metrics/esrgan.json" in diff and "metrics/interp.json" in diff  # the retrained model's numbers moved
    assert "metrics/bicubic.json" not in diff and "metrics/rrdbnet.json" not in diff
    changed = diff["metrics/esrgan.json"]["esrgan.Set5.psnr_y"]
    assert changed["old"] != changed["new"]


# ------------------------------------------------------------------------------------------------------ srgan sweep
SWEEP = ["esrgan.gan.weight=5e-3,2e-2", "esrgan.lr=1e-4,2e-4"]


def _dvc_experiments(repo: Path, prefix: str) -> dict[str, dict[str, str]]:
    """`dvc exp show --csv`: the experiments whose name starts with ``prefix``, each with its params and metrics."""
    rows = csv.DictReader(io.StringIO(_sh([str(BIN / "dvc"), "exp", "show", "--csv"], repo).stdout))
    return {r["Experiment"]: r for r in rows if r["Experiment"].startswith(prefix)}


def _sweep_runs(repo: Path, ident: str) -> tuple:
    runs = _runs(repo)
    parents = [r for r in runs if r.data.tags.get("srgan.sweep") == ident and r.data.tags["srgan.kind"] == "sweep"]
    assert len(parents) == 1, "one parent run per sweep, found again by a second call"
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id
                and r.data.tags.get("srgan.kind") == "sweep-experiment"}
    nested = {name: [r for r in runs if r.data.tags.get("mlflow.parentRunId") == c.info.run_id]
              for name, c in children.items()}
    return parents[0], children, nested


def test_sweep_of_two_esrgan_keys_on_two_workers(repo):
    """2 x 2 ESRGAN combinations on 2 DVC queue workers: DVC and MLflow agree on each, upstream is not re-run, the
    artifact is there, and the gate takes the best NIQE (register.set, Set14)."""
    start = time.time() * 1000
    out = _sh([str(BIN / "srgan"), "sweep", *SWEEP, "--jobs", "2"], repo).stdout
    assert "4 of 4 combinations succeeded" in out
    ident = re.search(r"^sweep (\w{8}): 4 combinations of esrgan.gan.weight x esrgan.lr", out, re.M).group(1)

    exps = _dvc_experiments(repo, f"sweep-{ident}-")
    assert sorted(exps) == [f"sweep-{ident}-{i:02d}" for i in range(4)]
    assert {(float(r["esrgan.gan.weight"]), float(r["esrgan.lr"])) for r in exps.values()} == {
        (0.005, 1e-4), (0.005, 2e-4), (0.02, 1e-4), (0.02, 2e-4)}

    parent, children, nested = _sweep_runs(repo, ident)
    assert parent.info.status == "FINISHED" and set(children) == set(exps)
    for name, child in children.items():
        assert child.info.status == "FINISHED" and child.data.tags["dvc_exp_name"] == name
        assert len(child.data.tags["dvc_lock_sha256"]) == 16
        assert float(child.data.params["esrgan.lr"]) == float(exps[name]["esrgan.lr"])
        assert child.data.metrics["esrgan/Set14/niqe"] == pytest.approx(float(exps[name]["esrgan.Set14.niqe"]))
        assert child.data.metrics["esrgan/Set5/psnr_y"] == pytest.approx(float(exps[name]["esrgan.Set5.psnr_y"]))
        stages = sorted(r.info.run_name for r in nested[name] if r.info.run_name != "register/srgan-esrgan")
        assert stages == ["esrgan", "evaluate/esrgan"]  # only what the keys affect ...
    later = [r.info.run_name for r in _runs(repo) if r.info.start_time >= start]
    assert "rrdbnet" not in later and "evaluate/bicubic" not in later  # ... upstream was up to date: not re-run
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{repo / 'mlflow' / 'mlflow.db'}")
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {
        "sweep.md", "sweep.csv", "sweep.json", "pd_plane_esrgan.png"}
    from PIL import Image

    assert Image.open(repo / "reports" / "sweeps" / ident / "pd_plane_esrgan.png").size == (700, 500)

    best = min(children, key=lambda n: children[n].data.metrics["esrgan/Set14/niqe"])
    gate = next(line for line in out.splitlines() if line.startswith("gate: esrgan:"))
    assert f"best by niqe is {best} " in gate
    versions = [v for v in _registry(repo).search_model_versions("name = 'srgan-esrgan'")
                if client.get_run(v.run_id).data.tags.get("mlflow.parentRunId") == children[best].info.run_id]
    assert len(versions) == 1  # the winner, registered once, under its own child run
    alias = "champion" if "promoted to @champion" in gate else "challenger"
    assert alias == "champion" or "not promoted (@challenger): " in gate  # with the gate's reason
    assert _registry(repo).get_model_version_by_alias("srgan-esrgan", alias).version == versions[0].version


def test_a_second_call_of_the_same_sweep_continues_it(repo):
    before = len(_runs(repo))
    out = _sh([str(BIN / "srgan"), "sweep", *SWEEP, "--jobs", "2"], repo).stdout
    assert "4 combination(s) finished by an earlier call of this sweep: not run again" in out
    assert "Running stage" not in out and len(_runs(repo)) == before  # nothing ran, nothing was logged twice
    assert "already version" in out  # the gate saw the same winner: nothing new registered


def test_a_failing_combination_is_reported_and_the_others_finish(repo):
    out = _sh([str(BIN / "srgan"), "sweep", "esrgan.init_from=models/srresnet.pth,models/rrdbnet.pth", "--no-gate",
               "-j", "2"], repo, check=False)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "1 of 2 combinations succeeded" in out.stdout
    ident = re.search(r"^sweep (\w{8}):", out.stdout, re.M).group(1)
    _, children, _ = _sweep_runs(repo, ident)
    failed, ok = children[f"sweep-{ident}-00"], children[f"sweep-{ident}-01"]  # SRResNet weights cannot be RRDB's
    assert failed.info.status == "FAILED" and "srresnet.pth" in failed.data.tags["srgan.error"]
    assert failed.data.tags["srgan.error"] in out.stdout
    assert ok.info.status == "FINISHED" and "esrgan/Set14/niqe" in ok.data.metrics


def test_a_sweep_survives_a_killed_queue_worker(repo):
    """SIGKILL the DVC queue worker while it runs an experiment: the sweep kills what it left running, queues the
    experiment again and finishes, each combination once in MLflow (one training run each, none left open)."""
    import psutil

    cmd = [str(BIN / "srgan"), "sweep", "esrgan.iterations=40,41", "esrgan.val_every=20", "--no-gate", "-j", "1"]
    proc = subprocess.Popen(cmd, cwd=repo, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, killed = time.monotonic() + 300, None
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(1)
            for p in psutil.process_iter(["cmdline"]):
                line = " ".join(p.info["cmdline"] or [])
                if "srgan_lib.commands.train esrgan" in line:
                    worker = next(q for q in p.parents() if "queue-worker" in " ".join(q.cmdline()))
                    worker.kill()
                    killed = worker.pid
                    break
        assert killed, "no experiment was seen training"
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "its DVC queue worker is gone: queued again (retry 1 of 1)" in out and "2 of 2 combinations" in out
    ident = re.search(r"^sweep (\w{8}):", out, re.M).group(1)
    _, children, nested = _sweep_runs(repo, ident)
    assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children.values())
    for runs in nested.values():
        assert [r.info.run_name for r in runs if r.info.status == "FINISHED"].count("esrgan") == 1
        assert all(r.info.status != "RUNNING" for r in runs)


# ------------------------------------------------------------------------------------------------------ Prefect
@pytest.fixture(scope="module")
def prefect(repo):
    """`python -m pipelines.services up` (what `make prefect-up` runs) on a free port, once for the module's last
    two tests; `down` afterwards, checking that every process it started is gone."""
    port = free_port()
    env = {"PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PREFECT_HOME": str(repo / ".prefect")}
    up = subprocess.run([sys.executable, "-m", "pipelines.services", "up", "--port", str(port)], cwd=repo,
                        env=_env(**env), capture_output=True, text=True, timeout=300)
    state = repo / ".prefect" / "services.json"
    pids = {k: v for k, v in json.loads(state.read_text()).items() if k != "port"} if state.exists() else {}
    try:
        assert up.returncode == 0, f"services up failed:\n{up.stdout}\n{up.stderr}"
        assert set(pids) == {"server", "worker"}
        yield env
    finally:
        down = subprocess.run([sys.executable, "-m", "pipelines.services", "down"], cwd=repo, env=_env(**env),
                              capture_output=True, text=True, timeout=120)
        assert down.returncode == 0, down.stderr
        for pid in pids.values():
            with pytest.raises(ProcessLookupError):
                os.killpg(pid, 0)


def test_prefect_deployment_runs_train_esrgan_with_an_override(repo, prefect):
    params_before = (repo / "params.yaml").read_bytes()
    listed = _sh([str(BIN / "prefect"), "deployment", "ls"], repo, **prefect).stdout
    for name in ("train-srgan/local", "train-esrgan/local", "train-realesrgan/local", "train/local", "evaluate/local"):
        assert name in listed
    run = _sh([str(BIN / "prefect"), "deployment", "run", "train-esrgan/local", "--param",
               'overrides={"esrgan.gan.weight": 0.02}', "--watch", "--watch-timeout", "600"], repo, **prefect)
    assert "Completed" in run.stdout
    worker_log = (repo / ".prefect" / "logs" / "worker.log").read_text()
    assert "Running stage 'train_gan@esrgan'" in worker_log  # stage output is in the flow's (UI) logs
    assert "Running stage 'train_psnr@rrdbnet'" not in worker_log
    assert "| srgan-esrgan | @" in worker_log  # the flow's summary lists the registry (alias: the gate's)

    assert (repo / "params.yaml").read_bytes() == params_before  # the override never edits the file ...
    exps = _sh([str(BIN / "dvc"), "exp", "show", "--json"], repo).stdout
    assert "train-esrgan-" in exps and "0.02" in exps  # ... DVC records it as an experiment ...
    runs = _runs(repo)
    parent = [r for r in runs if r.info.run_name.startswith("train-esrgan/")][-1]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["override.esrgan.gan.weight"] == "0.02"  # ... and MLflow on the flow's run
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert set(children) == {"esrgan", "evaluate/esrgan"}  # register@esrgan logs its model in the run 'esrgan'
    esrgan_versions = _registry(repo).search_model_versions("name = 'srgan-esrgan'")
    assert any(v.run_id == children["esrgan"].info.run_id for v in esrgan_versions)  # the override's version
    assert children["esrgan"].data.params["esrgan.gan.weight"] == "0.02"
    assert children["evaluate/esrgan"].data.metrics["Set5/psnr_y"] > 0

    evaluate = _sh([str(BIN / "prefect"), "deployment", "run", "evaluate/local", "--watch", "--watch-timeout",
                    "300"], repo, **prefect)
    assert "Completed" in evaluate.stdout

    # the deployment sweep/local: the flow runs `srgan sweep` (its own DVC queue workers) on the process worker
    assert "sweep/local" in listed
    sweep = _sh([str(BIN / "prefect"), "deployment", "run", "sweep/local", "--param",
                 'grid=["esrgan.gan.weight=3e-3,2e-2"]', "--param", "jobs=2", "--param", "gate=false", "--watch",
                 "--watch-timeout", "600"], repo, **prefect)
    assert "Completed" in sweep.stdout
    worker_log = (repo / ".prefect" / "logs" / "worker.log").read_text()
    ident = re.search(r"sweep (\w{8}): 2 combinations of esrgan.gan.weight", worker_log).group(1)
    _, children, nested = _sweep_runs(repo, ident)
    assert sorted(children) == [f"sweep-{ident}-00", f"sweep-{ident}-01"]
    for child in children.values():
        assert child.info.status == "FINISHED" and "esrgan/Set14/niqe" in child.data.metrics
    assert sorted(r.info.run_name for r in nested[f"sweep-{ident}-00"]) == ["esrgan", "evaluate/esrgan"]
    assert nested[f"sweep-{ident}-01"] == []  # 2e-2 is the override above: DVC's run-cache restored it, nothing ran


def test_prefect_sweep_survives_a_killed_worker(repo, prefect):
    """The sweep deployment's process worker (and the flow run it runs) SIGKILLed mid-sweep, a new worker started,
    the deployment run again: the new flow run finds the sweep's parent run and the experiments still in DVC's
    queue, and the sweep completes with every combination once in MLflow."""
    import psutil

    from pipelines.services import POOL, prefect_env, start_worker

    grid = ['grid=["esrgan.iterations=30,31", "esrgan.val_every=15"]', "--param", "jobs=1", "--param",
            "gate=false"]
    run = [str(BIN / "prefect"), "deployment", "run", "sweep/local", "--param", *grid]
    _sh(run, repo, **prefect)  # not watched: the flow run starts on the worker
    state = repo / ".prefect" / "services.json"
    pids = json.loads(state.read_text())
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any(
            "srgan_lib.commands.train esrgan" in " ".join(p.info["cmdline"] or [])
            for p in psutil.process_iter(["cmdline"])):
        time.sleep(1)
    worker = psutil.Process(pids["worker"])
    tree = [worker, *worker.children(recursive=True)]  # the worker and its flow run (srgan sweep in it)
    assert any("sweep" in " ".join(p.cmdline()) or "prefect" in " ".join(p.cmdline()) for p in tree[1:])
    for p in tree:
        p.kill()
    psutil.wait_procs(tree, timeout=30)
    port = pids["port"]
    worker = start_worker(repo, prefect_env(repo / ".prefect", port), POOL)
    threading.Thread(target=worker.wait, daemon=True).start()  # reaped when `services down` stops it
    pids["worker"] = worker.pid
    state.write_text(json.dumps(pids))  # `services down` stops the new worker

    again = _sh([*run, "--watch", "--watch-timeout", "600"], repo, **prefect)
    assert "Completed" in again.stdout
    log = (repo / ".prefect" / "logs" / "worker.log").read_text()
    ident = re.search(r"sweep (\w{8}): 2 combinations of esrgan.iterations", log).group(1)
    assert "still in DVC's queue from an earlier call: waiting for them" in log
    _, children, nested = _sweep_runs(repo, ident)
    assert sorted(children) == [f"sweep-{ident}-00", f"sweep-{ident}-01"]
    for name, child in children.items():
        assert child.info.status == "FINISHED" and "esrgan/Set14/niqe" in child.data.metrics
        assert sorted(r.info.run_name for r in nested[name]) == ["esrgan", "evaluate/esrgan"]  # each ran once
