"""The model registry: the promotion gate against hand-computed decisions; registration through a real `mlflow server`
(aliases moved by the gate in both directions, idempotence, tags); a registered version served by a real
`mlflow models serve` answering a REST request byte-equal to `srgan upscale`; models:/ URIs through `srgan upscale`
and `srgan evaluate`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srgan_lib.models import build_model
from srgan_lib.registry.gate import GateError, GateRule, decide, metric_tags, metrics_from_tags
from tests.conftest import BENCHMARKS, free_port, run_cli
from tests.conftest import mlflow_server as start_mlflow_server

BIN = Path(sys.executable).parent
RULE = GateRule(test_set="Set14", psnr_floor=1.5)
BICUBIC = {"psnr_y": 26.09}


# ------------------------------------------------------------------------------------------------------------- gate

def test_psnr_gate_promotes_only_a_higher_psnr():
    assert decide("psnr", {"psnr_y": 26.5}, None, None, RULE).alias == "champion"  # nothing to beat
    better = decide("psnr", {"psnr_y": 26.5}, {"psnr_y": 26.4}, None, RULE)
    assert (better.alias, better.metric, better.score, better.champion_score) == ("champion", "psnr_y", 26.5, 26.4)
    assert decide("psnr", {"psnr_y": 26.3}, {"psnr_y": 26.4}, None, RULE).alias == "challenger"
    assert decide("psnr", {"psnr_y": 26.4}, {"psnr_y": 26.4}, None, RULE).alias == "challenger"  # a tie keeps it
    margin = GateRule("Set14", 1.5, min_gain=0.2)
    assert decide("psnr", {"psnr_y": 26.5}, {"psnr_y": 26.4}, None, margin).alias == "challenger"
    assert decide("psnr", {"psnr_y": 26.7}, {"psnr_y": 26.4}, None, margin).alias == "champion"


def test_gan_gate_prefers_pi_then_niqe_lower_wins_and_keeps_a_psnr_floor():
    champ = {"psnr_y": 26.0, "niqe": 6.9}
    assert decide("gan", {"psnr_y": 25.0, "niqe": 6.5}, champ, BICUBIC, RULE).alias == "champion"
    assert decide("gan", {"psnr_y": 26.5, "niqe": 7.0}, champ, BICUBIC, RULE).alias == "challenger"
    # PSNR-Y below bicubic - 1.5 = 24.59: never promoted, however low its NIQE
    low = decide("gan", {"psnr_y": 24.5, "niqe": 3.0}, None, BICUBIC, RULE)
    assert low.alias == "challenger" and "24.59" in low.reason
    # PI when both versions have it (even though NIQE says the opposite), NIQE when the champion has no PI
    with_pi = decide("gan", {"psnr_y": 26.0, "pi": 3.0, "niqe": 7.0}, {"psnr_y": 26.0, "pi": 3.5, "niqe": 6.0},
                     BICUBIC, RULE)
    assert (with_pi.metric, with_pi.alias) == ("pi", "champion")
    assert decide("gan", {"psnr_y": 26.0, "pi": 3.0, "niqe": 7.0}, champ, BICUBIC, RULE).metric == "niqe"
    with pytest.raises(GateError, match="no perceptual score"):
        decide("gan", {"psnr_y": 26.0}, None, BICUBIC, RULE)
    with pytest.raises(GateError, match="baseline"):
        decide("gan", {"psnr_y": 26.0, "niqe": 6.0}, None, None, RULE)


def test_real_world_generators_are_gated_on_the_real_world_set():
    rule = GateRule("Set14", 1.5, realworld_set="Set14-RW")
    assert rule.for_model({"degradation": "realworld"}).test_set == "Set14-RW"
    assert rule.for_model({"degradation": "bicubic"}) is rule and rule.for_model({}) is rule  # older checkpoints
    # the floor is the baseline's PSNR-Y on that same set: 22.76 - 1.5 on Set14-RW, not 26.09 - 1.5 on Set14
    ok = decide("gan", {"psnr_y": 22.5, "niqe": 9.2}, None, {"psnr_y": 22.76}, rule.for_model({"degradation":
                                                                                             "realworld"}))
    assert ok.alias == "champion" and ok.metric == "niqe"


def test_metric_tags_round_trip():
    results = {"Set5": {"psnr_y": 29.01234567, "niqe": float("nan")}, "Set14": {"psnr_y": 26.5, "n_images": 14}}
    tags = metric_tags(results)
    assert tags == {"metric.Set5.psnr_y": "29.0123", "metric.Set14.psnr_y": "26.5", "metric.Set14.n_images": "14"}
    assert metrics_from_tags(tags, "Set14") == {"psnr_y": 26.5, "n_images": 14.0}


# ------------------------------------------------------------------------------------------------- real components

def _checkpoint(path: Path, seed: int, gan: bool = False, degradation: str = "bicubic") -> Path:
    torch.manual_seed(seed)
    net = build_model("rrdbnet", num_block=1, num_feat=8, num_grow_ch=4)
    meta = {"stage": "tiny", "generator": "rrdbnet", "generator_options": {"num_block": 1, "num_feat": 8,
            "num_grow_ch": 4}, "parameters": 0, "iterations": 1, "batch_size": 1, "hr_size": 32, "lr": 1e-4,
            "schedule": "cosine", "degradation": degradation, "losses": {
                "pixel": "l1 x 1", "perceptual": "none", "gan": "ragan x 0.005" if gan else "none"}}
    torch.save({"params": net.state_dict(), "meta": meta}, path)
    return path


def _metrics(path: Path, label: str, rw: dict | None = None, **set14: float) -> Path:
    sets = {"Set5": {"psnr_y": 28.0, "n_images": 5}, "Set14": {**set14, "n_images": 14}}
    path.write_text(json.dumps({label: {**sets, **({"Set14-RW": {**rw, "n_images": 14}} if rw else {})}}))
    return path


def _register(tmp: Path, uri: str, ckpt: Path, metrics: Path, name: str = "srgan-tiny", cli: bool = False) -> dict:
    """Register through the library function (fast) or the `srgan register` command; the record it wrote."""
    from srgan_lib.registry.stage import RegisterSettings, run_register

    out = tmp / f"{ckpt.stem}.json"
    baseline = _metrics(tmp / "bicubic.json", "bicubic", {"psnr_y": 22.76, "niqe": 9.9}, psnr_y=26.09, niqe=7.62)
    if cli:
        proc = run_cli("register", "--model", str(ckpt), "--name", name, "--metrics", str(metrics), "--baseline",
                       str(baseline), "--set", "Set14", "--out", str(out), "--tracking-uri", uri, cwd=tmp)
        assert f"register: {name} version" in proc.stdout and f"models:/{name}@" in proc.stdout
    else:
        run_register(RegisterSettings(model=str(ckpt), name=name, metrics=str(metrics), baseline=str(baseline),
                                      rule=RULE, out=str(out), tracking_uri=uri))
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` (SQLite store, artifacts beside it)."""
    root = tmp_path_factory.mktemp("server")
    with start_mlflow_server(root / "mlflow.db", root) as url:
        yield url


@pytest.mark.slow  # a server, torchrun, torch.compile or a killed subprocess: seconds to tens of seconds
def test_register_moves_champion_by_the_gate_both_ways_and_is_idempotent(tmp_path, mlflow_server):
    from mlflow.tracking import MlflowClient

    v1 = _register(tmp_path, mlflow_server, _checkpoint(tmp_path / "a.pth", 1), _metrics(tmp_path / "a.m", "a",
                   psnr_y=26.2))
    assert (v1["version"], v1["alias"], v1["new"]) == ("1", "champion", True)
    v2 = _register(tmp_path, mlflow_server, _checkpoint(tmp_path / "b.pth", 2), _metrics(tmp_path / "b.m", "b",
                   psnr_y=26.5))
    assert (v2["version"], v2["alias"]) == ("2", "champion")  # better: the alias moves
    v3 = _register(tmp_path, mlflow_server, _checkpoint(tmp_path / "c.pth", 3), _metrics(tmp_path / "c.m", "c",
                   psnr_y=26.3))
    assert (v3["version"], v3["alias"]) == ("3", "challenger")  # worse: it stays where it is
    again = _register(tmp_path, mlflow_server, tmp_path / "c.pth", tmp_path / "c.m")
    assert (again["version"], again["new"], again["gate"]) == ("3", False, None)  # same weights: nothing new
    # version 1 lost the alias to version 2: the command names it by its number, not by an alias it no longer has
    proc = run_cli("register", "--model", str(tmp_path / "a.pth"), "--name", "srgan-tiny", "--metrics",
                   str(tmp_path / "a.m"), "--set", "Set14", "--out", str(tmp_path / "a1.json"), "--tracking-uri",
                   mlflow_server, cwd=tmp_path)
    assert "already version 1; nothing registered" in proc.stdout
    assert "--model models:/srgan-tiny/1 " in proc.stdout and "@" not in proc.stdout.split("load it:")[1]

    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    assert len(client.search_model_versions("name = 'srgan-tiny'")) == 3
    assert client.get_model_version_by_alias("srgan-tiny", "champion").version == "2"
    assert client.get_model_version_by_alias("srgan-tiny", "challenger").version == "3"
    tags = client.get_model_version("srgan-tiny", "3").tags
    assert tags["gate.decision"] == "challenger" and tags["gate.metric"] == "psnr_y"
    assert float(tags["gate.score"]) == 26.3 and float(tags["gate.champion_score"]) == 26.5
    assert tags["gate.champion_version"] == "2" and tags["metric.Set14.psnr_y"] == "26.3"
    assert tags["srgan.kind"] == "psnr" and len(tags["srgan.weights_sha256"]) == 64 and "git_commit" in tags

    # a GAN version below the PSNR floor is a challenger of its own model
    low = _register(tmp_path, mlflow_server, _checkpoint(tmp_path / "g.pth", 4, gan=True),
                    _metrics(tmp_path / "g.m", "g", psnr_y=24.0, niqe=5.0), name="srgan-tiny-gan")
    assert low["alias"] == "challenger" and "floor" in low["gate"]["gate.reason"]
    assert client.get_model_version("srgan-tiny-gan", "1").tags["srgan.kind"] == "gan"
    # a generator trained on real-world degradations is judged on the real-world set (register.realworld_set):
    # its Set14 PSNR-Y is below the floor, its Set14-RW numbers pass it, so it becomes the champion on NIQE there
    rw = _register(tmp_path, mlflow_server, _checkpoint(tmp_path / "rw.pth", 5, gan=True, degradation="realworld"),
                   _metrics(tmp_path / "rw.m", "rw", {"psnr_y": 22.5, "niqe": 9.2}, psnr_y=20.0, niqe=5.0),
                   name="srgan-tiny-rw")
    assert rw["alias"] == "champion" and rw["gate"]["gate.metric"] == "niqe" and rw["gate"]["gate.score"] == "9.2"
    assert client.get_model_version("srgan-tiny-rw", "1").tags["gate.test_set"] == "Set14-RW"
    # a logged MLflow Model (pyfunc), linked to the run it was logged in
    mv = client.get_model_version("srgan-tiny", "2")
    assert mv.source.startswith("models:/m-")
    logged = client.get_logged_model(mv.source.removeprefix("models:/"))
    assert logged.source_run_id == mv.run_id and logged.name == "generator"


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """A tiny generator registered as srgan-tiny@champion in a real SQLite store."""
    root = tmp_path_factory.mktemp("registered")
    uri = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    reg = _register(root, uri, _checkpoint(root / "tiny.pth", 7), _metrics(root / "tiny.m", "tiny", psnr_y=26.0),
                    cli=True)
    assert reg["alias"] == "champion"
    image = root / "in.png"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((21, 26, 3)) * 255).astype(np.uint8)).save(image)
    return root, uri, image


def test_models_uri_works_through_srgan_upscale_and_evaluate(registered, tmp_path):
    root, uri, image = registered
    run_cli("upscale", "--model", "models:/srgan-tiny@champion", "--tracking-uri", uri, str(image),
            "-o", str(tmp_path / "up"), "--device", "cpu")
    via_file = tmp_path / "direct"
    run_cli("upscale", "--model", str(root / "tiny.pth"), str(image), "-o", str(via_file), "--device", "cpu")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "up" / "in.png")),
                          np.asarray(Image.open(via_file / "in.png")))
    out = tmp_path / "eval.json"
    run_cli("evaluate", "--model", "models:/srgan-tiny/1", "--set", f"Set5={BENCHMARKS / 'Set5'}", "--json",
            str(out), "--tracking-uri", uri)
    results = json.loads(out.read_text())
    assert results["Set5"]["model"] == "srgan-tiny" and results["Set5"]["n_images"] == 5


@pytest.mark.slow  # a server, torchrun, torch.compile or a killed subprocess: seconds to tens of seconds
def test_mlflow_models_serve_answers_like_srgan_upscale(registered, tmp_path):
    root, uri, image = registered
    run_cli("upscale", "--model", "models:/srgan-tiny@champion", "--tracking-uri", uri, str(image),
            "-o", str(tmp_path / "cli"), "--device", "cpu")
    expected = np.asarray(Image.open(tmp_path / "cli" / "in.png"))
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "SRGAN_DEVICE": "cpu",
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    with open(log, "wb") as fh:
        proc = subprocess.Popen([str(BIN / "mlflow"), "models", "serve", "-m", "models:/srgan-tiny@champion",
                                 "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)], cwd=root, env=env,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "mlflow models serve did not answer /ping in 120 s"
                time.sleep(0.5)
        pixels = np.asarray(Image.open(image).convert("RGB"))
        body = json.dumps({"inputs": pixels.tolist(), "params": {"tile": 0}}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body,
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            answer = np.asarray(json.loads(resp.read())["predictions"], dtype=np.uint8)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert answer.shape == (84, 104, 3)
    assert np.array_equal(answer, expected)  # byte for byte what `srgan upscale` wrote


def test_evaluate_logs_each_checkpoint_of_a_folder_as_an_mlflow_model_of_its_run(tmp_path):
    # the interpolation sweep's alphas: no training run owns them, so each is a model of its evaluation run
    import mlflow.pyfunc
    from mlflow.tracking import MlflowClient

    from srgan_lib.evaluation.stage import EvaluateSettings, run_evaluate
    from srgan_lib.inference.upscaler import Upscaler
    from srgan_lib.models import load_generator
    from srgan_lib.registry.mlflow_model import fluent_uri
    from srgan_lib.registry.resolve import resolve_model_path

    folder = tmp_path / "interp"
    folder.mkdir()
    for alpha, seed in (("0.4", 1), ("0.6", 2)):
        _checkpoint(folder / f"interp_{alpha}.pth", seed)
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    done = run_evaluate(EvaluateSettings(model=str(folder), sets=[("Set5", str(BENCHMARKS / "Set5"))],
                                         json=str(tmp_path / "eval"), tracking_uri=uri, log_model=True))
    client = MlflowClient(tracking_uri=uri)
    image = (np.random.default_rng(3).random((12, 10, 3)) * 255).astype(np.uint8)
    assert sorted(e.label for e in done) == ["interp_0.4", "interp_0.6"]
    for e in done:
        run = client.get_run(e.run_id)
        assert run.info.status == "FINISHED" and run.info.run_name == f"evaluate/{e.label}"
        logged = client.get_logged_model(e.model_uri.removeprefix("models:/"))
        assert logged.source_run_id == e.run_id and logged.tags["srgan.model"] == e.label
        with fluent_uri(uri):  # what MLFLOW_TRACKING_URI does for `mlflow models serve -m models:/<id>`
            out = mlflow.pyfunc.load_model(e.model_uri).predict(image, params={"tile": 0})
        expected = Upscaler(load_generator(e.checkpoint), device="cpu", tile=0).upscale_array(image, progress=False)
        assert out.shape == (48, 40, 3) and np.array_equal(out, expected)
        # `srgan upscale --model models:/m-<id>` reads the same checkpoint back from the logged model
        back = Upscaler(load_generator(resolve_model_path(e.model_uri, uri)), device="cpu", tile=0)
        assert np.array_equal(back.upscale_array(image, progress=False), expected)
    # without tracking there is nowhere to log: nothing is logged and nothing fails
    plain = run_evaluate(EvaluateSettings(model=str(folder / "interp_0.4.pth"), sets=[("Set5", str(BENCHMARKS /
                         "Set5"))], json="-", log_model=True))
    assert plain[0].model_uri is None and plain[0].run_id is None


@pytest.mark.slow
def test_sigterm_to_the_mlflow_ui_launcher_takes_the_server_down(tmp_path):
    """`make mlflow-ui` runs `python -m pipelines.services mlflow-ui`; SIGTERM to it used to leave `mlflow server` and
    its uvicorn listening, re-parented to PID 1. Now the port is free and no process of the server is left."""
    import psutil

    from pipelines.services import mlflow_env, stop_pid

    (tmp_path / "params.yaml").write_text((Path(__file__).parents[2] / "params.yaml").read_text()
                                          .replace("sqlite:///mlflow/mlflow.db", f"sqlite:///{tmp_path}/m.db"))
    port = free_port()
    log = tmp_path / "ui.log"
    with open(log, "wb") as fh:
        launcher = subprocess.Popen([sys.executable, "-m", "pipelines.services", "mlflow-ui", "--port", str(port),
                                     "--root", str(tmp_path)], env=mlflow_env(), stdout=fh, stderr=subprocess.STDOUT,
                                    cwd=Path(__file__).parents[2], start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                assert launcher.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.5)
        server = psutil.Process(launcher.pid).children(recursive=True)
        assert server, "the launcher started no server process"
        launcher.send_signal(signal.SIGTERM)  # the launcher alone, as `kill PID` does
        assert launcher.wait(timeout=30) == 128 + signal.SIGTERM
        _, alive = psutil.wait_procs(server, timeout=15)
        assert not alive, [p.cmdline()[:3] for p in alive]
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
    finally:
        stop_pid(launcher.pid, timeout=5)
