"""`srgan sweep`'s parts that need no queue: the grid (parsing, typing every combination, the maximum), the stages
a key affects (read from the project's own dvc.yaml), the Pareto front and the best combination (hand-computed), and
the command refusing bad grids before any stage runs. The sweep itself runs in tests/e2e/test_pipeline.py."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from srgan_lib.config.params import load_params
from srgan_lib.orchestration.sweep.dag import plan
from srgan_lib.orchestration.sweep.figures import pareto_front
from srgan_lib.orchestration.sweep.grid import Combination, GridError, combinations, parse_axis, parse_grid, sweep_id
from srgan_lib.orchestration.sweep.run import FAILED, SUCCESS, Outcome, best, error_line
from tests.conftest import REPO, micro_repo, run_cli


@pytest.fixture(scope="module")
def params():
    return load_params(REPO / "params.yaml", folders=False)


def test_axis_values_are_yaml_and_brackets_do_not_split():
    assert parse_axis("esrgan.gan.weight=5e-3,1e-2") == parse_axis("esrgan.gan.weight = 0.005, 0.01")
    a = parse_axis("esrgan.gan.weight=5e-3,1e-2")
    assert a.key == "esrgan.gan.weight" and a.values == (0.005, 0.01)
    assert parse_axis("srresnet.milestones=[100,200],[300]").values == ([100, 200], [300])
    assert parse_axis("esrgan.generator_options={num_block: 1, num_feat: 8},{num_block: 2}").values == (
        {"num_block": 1, "num_feat": 8}, {"num_block": 2})
    assert parse_axis("train.resize=pil,'a,b'").values == ("pil", "a,b")


@pytest.mark.parametrize("text, says", [
    ("esrgan.gan.weight", "section.key=V1,V2"),
    ("weight=1,2", "section.key=V1,V2"),
    ("esrgan.gan.weight=1e-3,,1e-2", "'esrgan.gan.weight' has an empty value"),
    ("esrgan.lr=1e-4,1e-4", "'esrgan.lr' repeats a value"),
])
def test_malformed_axes_are_refused_naming_the_key(text, says):
    with pytest.raises(GridError, match=says):
        parse_axis(text)


def test_empty_and_repeated_grids_are_refused():
    with pytest.raises(GridError, match="the grid is empty"):
        parse_grid([])
    with pytest.raises(GridError, match=r"'esrgan\.lr' is given twice"):
        parse_grid(["esrgan.lr=1e-4", "esrgan.lr=2e-4"])


def test_every_combination_is_typed_against_params(params):
    axes = parse_grid(["esrgan.gan.weight=1e-3,5e-3", "esrgan.lr=1e-4,2e-4,4e-4"])
    combos = combinations(params, axes, "abc")
    assert len(combos) == 6 and [c.name for c in combos][:2] == ["sweep-abc-00", "sweep-abc-01"]
    assert combos[1].values == {"esrgan.gan.weight": 0.001, "esrgan.lr": 0.0002}  # product order: last axis fastest
    assert combos[1].overrides == ["esrgan.gan.weight=0.001", "esrgan.lr=0.0002"]
    with pytest.raises(GridError, match=r"esrgan\.gan\.wieght"):  # an unknown key, named
        combinations(params, parse_grid(["esrgan.gan.wieght=1e-3,5e-3"]), "x")
    with pytest.raises(GridError, match=r"esrgan\.lr=fast.*esrgan\.lr"):  # a value of the wrong type, named
        combinations(params, parse_grid(["esrgan.lr=1e-4,fast"]), "x")


def test_a_grid_over_the_maximum_is_refused_with_its_count(params):
    axes = parse_grid(["esrgan.lr=1e-4,2e-4,3e-4,4e-4,5e-4", "esrgan.gan.weight=1e-3,2e-3,3e-3,4e-3"])
    with pytest.raises(GridError, match=r"20 combinations, more than the maximum 16 \(5 x 4\).*--max 20"):
        combinations(params, axes, "x", maximum=16)
    assert len(combinations(params, axes, "x", maximum=20)) == 20


def test_the_sweep_id_changes_with_the_grid_the_stages_and_the_params(params):
    axes = parse_grid(["esrgan.lr=1e-4,2e-4"])
    ident = sweep_id(axes, ["evaluate_models@esrgan"], params)
    assert ident == sweep_id(parse_grid(["esrgan.lr=1e-4, 2e-4"]), ["evaluate_models@esrgan"], params)
    assert ident != sweep_id(parse_grid(["esrgan.lr=1e-4,3e-4"]), ["evaluate_models@esrgan"], params)
    assert ident != sweep_id(axes, ["train_gan@esrgan"], params)
    from srgan_lib.config.params import override

    assert ident != sweep_id(axes, ["evaluate_models@esrgan"], override(params, ["esrgan.iterations=700"]))


def test_plan_reruns_only_what_the_keys_affect():
    """From the project's dvc.yaml: an ESRGAN key re-runs ESRGAN's training and evaluation; RRDBNet (its init) and
    the data stages are upstream, run once."""
    p = plan(["esrgan.gan.weight"], extra_upstream=["evaluate_baselines@bicubic"], cwd=REPO)
    assert p.targets == ("evaluate_models@esrgan",) and p.models == ("esrgan",)
    assert "train_psnr@rrdbnet" in p.upstream and "train_gan@esrgan" not in p.upstream
    assert p.upstream.index("store") < p.upstream.index("train_psnr@rrdbnet")  # in the order they run
    assert "evaluate_baselines@bicubic" in p.upstream and "train_psnr@srresnet" not in p.upstream
    shared = plan(["train.seed"], cwd=REPO)  # a key every training reads: every trained model compared
    assert set(shared.models) == {"srresnet", "srgan", "rrdbnet", "esrgan", "realesrnet", "realesrgan"}
    with pytest.raises(GridError, match=r"does not depend on esrgan\.lr"):
        plan(["esrgan.lr"], ["evaluate_models@srresnet"], cwd=REPO)
    with pytest.raises(GridError, match="unknown stage train_esrgan"):
        plan(["esrgan.lr"], ["train_esrgan"], cwd=REPO)


def test_pareto_front_by_hand():
    #        a(1,5)  b(2,3)  c(3,4) dominated by b  d(4,1)  e(2,6) dominated by a and b
    points = [(1, 5), (2, 3), (3, 4), (4, 1), (2, 6)]
    assert pareto_front(points) == [0, 1, 3]
    assert pareto_front([(1, 1)]) == [0]


def _outcome(i: int, status: str, **metrics: float) -> Outcome:
    return Outcome(Combination(i, {"esrgan.lr": i}, f"sweep-x-{i:02d}"), status,
                   {"esrgan": {"Set5": dict(metrics)}})


def test_best_follows_the_metrics_direction_and_skips_failures():
    outs = [_outcome(0, SUCCESS, niqe=6.0, psnr_y=27.0), _outcome(1, SUCCESS, niqe=5.0, psnr_y=26.0),
            _outcome(2, FAILED, niqe=1.0, psnr_y=40.0), _outcome(3, SUCCESS, niqe=math.nan, psnr_y=25.0)]
    assert best(outs, "esrgan", "Set5", "niqe").combo.index == 1  # lower wins; NaN and failures never do
    assert best(outs, "esrgan", "Set5", "psnr_y").combo.index == 0  # higher wins
    assert best(outs, "esrgan", "Set14", "niqe") is None


def test_error_line_is_the_stages_own_error():
    log = ("Running stage 'train_gan@esrgan':\n> python -m srgan_lib.commands.train ...\n"
           "srgan: error: models/rrdbnet.pth: does not fit rrdbnet (...)\n"
           "ERROR: failed to reproduce 'train_gan@esrgan': failed to run: python -m ..., exited with 2\n")
    assert error_line(log) == "srgan: error: models/rrdbnet.pth: does not fit rrdbnet (...)"
    assert error_line("just this\n") == "just this"


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    return micro_repo(tmp_path_factory.mktemp("sweep-bad"))


@pytest.mark.parametrize("grid, says", [
    (["esrgan.gan.wieght=1e-3,5e-3"], "esrgan.gan.wieght"),
    (["esrgan.lr=1e-4,fast"], "esrgan.lr"),
    (["esrgan.lr="], "'esrgan.lr' has an empty value"),
    (["esrgan.lr=1e-4,2e-4", "esrgan.gan.weight=1,2,3,4,5", "esrgan.ema_decay=0.9,0.99,0.999,0.9999,0.99999,0.5,0.6"],
     "70 combinations, more than the maximum 64"),
    (["esrgan.lr=1e-4,2e-4", "--metric", "speed"], "--metric 'speed'"),
    (["esrgan.lr=1e-4,2e-4", "--stages", "train_esrgan"], "unknown stage train_esrgan"),
])
def test_sweep_refuses_a_bad_grid_before_any_stage_runs(copy, grid, says):
    res = run_cli("sweep", *grid, "--jobs", "2", cwd=copy, check=False)
    assert res.returncode == 2, res.stdout + res.stderr
    assert says in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (copy / "dvc.lock").exists() and not (copy / "data" / "lists").exists()  # nothing ran
    assert not (copy / "mlflow").exists()  # not even a parent run


def test_sweep_without_a_grid_is_a_usage_error(copy):
    res = run_cli("sweep", cwd=copy, check=False)
    assert res.returncode == 2 and "SECTION.KEY=V1,V2" in res.stderr


@pytest.mark.parametrize(("cores", "processes", "threads"), [(2, 1, 2), (2, 2, 1), (2, 3, 1), (16, 4, 4), (None, 2, 1)])
def test_concurrent_processes_share_the_cores(monkeypatch, cores, processes, threads):
    """`srgan sweep -j N`'s queue workers (and the test suite's xdist workers) divide the cores, at least 1 thread."""
    from srgan_lib.orchestration.sweep import queue

    monkeypatch.setattr(queue.os, "cpu_count", lambda: cores)
    assert queue.thread_share(processes) == threads
