"""The ``evaluate`` stage: a baseline, a checkpoint or a folder of checkpoints on every test set; per-model JSON, the
DVC metrics file and one MLflow run per model. ``srgan evaluate``, ``dvc.yaml`` and the Prefect flows run this.

With ``reuse``, a network whose weights are bit-identical to one already evaluated under the same settings (the
interpolation sweep's alpha 0 and 1 are the PSNR and the GAN generator) takes those results instead of being run
again; its results say so (``reused_from``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from srgan_lib import UserError, tracking
from srgan_lib.config.fields import default
from srgan_lib.config.sections import DEFAULT_SCALE, Evaluate, Lpips, Ma, Tracking
from srgan_lib.data.lists import test_lists
from srgan_lib.evaluation.measure import (
    BASELINE_CONFIGURATIONS,
    BASELINES,
    SRMethod,
    TestImage,
    evaluate,
    test_set_from_folder,
    test_set_from_list,
)
from srgan_lib.io.images import write_json
from srgan_lib.metrics import NAMES
from srgan_lib.models import checkpoint_meta, describe_meta, load_generator

log = logging.getLogger(__name__)
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors")


class EvaluateError(UserError, ValueError):
    """Bad evaluation settings: printed as one line by the CLI."""


@dataclass(frozen=True)
class EvaluateSettings:
    """What to evaluate, on what, how, and where the results go (the flags of ``srgan evaluate``)."""

    model: str  # bicubic | nearest | a checkpoint | a folder of them | models:/NAME@ALIAS
    name: str | None = None
    sets: Sequence[tuple[str, str]] = ()  # (NAME, folder)
    lists: Sequence[str] = ()  # folders of test lists written by the lists stage
    scale: int = DEFAULT_SCALE
    lr_source: str = default(Evaluate, "lr_source")
    kernel: str = default(Evaluate, "kernel")
    precision: str = "fp32"
    tile: int | None = None
    ema: bool = True
    json: str | None = None  # a file (one model), a folder (a folder of checkpoints), '-': returned only
    metrics_json: str | None = None
    sr_dir: str | None = None
    ma_model: str | None = None
    ma_sha256: str = default(Ma, "sha256")
    ma_download: bool = default(Ma, "download")
    lpips_net: str = default(Lpips, "net")  # alex | vgg | none
    lpips_weights: str | None = None  # the authors' v0.1 <net>.pth
    lpips_sha256: str = default(Lpips, "sha256")  # empty: the authors' published file's
    lpips_backbone: str = default(Lpips, "backbone")  # torchvision's cached ImageNet weights, or a state dict file
    tracking_uri: str | None = None
    experiment: str = default(Tracking, "experiment")
    reuse: Sequence[str] = ()  # evaluation JSON files whose results a bit-identical network may take
    log_model: bool = False  # each checkpoint also an MLflow Model in its evaluation run (interpolated networks)


@dataclass
class ModelEvaluation:
    """The results of one model: set name -> metrics, and where they were recorded."""

    label: str
    checkpoint: str
    results: dict[str, dict]
    seconds: float
    json_path: str | None = None
    run_id: str | None = None
    reused_from: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    model_uri: str | None = None  # models:/<id> of the MLflow Model logged in the run (log_model)


def test_sets(folders: Sequence[tuple[str, str]], lists: Sequence[str], scale: int,
              sources: dict[str, str] | None = None) -> dict[str, list[TestImage]]:
    """The test sets: named folders and every test list of each lists folder (``sources`` gets name -> where)."""
    sets = {name: test_set_from_folder(path, scale) for name, path in folders}
    found = {name: str(path) for name, path in folders}
    for lists_dir in lists:
        for list_file in test_lists(lists_dir):
            name, images = test_set_from_list(list_file, scale)
            sets[name] = images
            found[name] = str(list_file)
    if not sets:
        raise EvaluateError("no test set given: use --set NAME=PATH (repeatable) or --lists DIR")
    if sources is not None:
        sources.update(found)
    return sets


def state_digest(model: torch.nn.Module) -> str:
    """sha256 over a network's state (names, dtypes, shapes, bytes): equal digests mean the same function."""
    h = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _methods(s: EvaluateSettings) -> list[tuple[str, str, SRMethod, str]]:
    """(label, checkpoint or 'none', method, weights digest or '') for ``s.model``."""
    from srgan_lib.evaluation.methods import GeneratorMethod

    if s.model in BASELINES:
        return [(s.name or s.model, "none", BASELINES[s.model](s.scale), "")]
    if s.model.startswith("models:/"):  # a registered version: its checkpoint, labelled NAME unless --name says
        from srgan_lib.registry.resolve import resolve_model_path

        local = resolve_model_path(s.model, s.tracking_uri)
        ref = s.model.removeprefix("models:/")
        s = replace(s, model=local, name=s.name or ref.split("@", 1)[0].rsplit("/", 1)[0])
    path = Path(s.model)
    if path.is_dir():
        checkpoints = sorted(p for p in path.iterdir() if p.suffix in CHECKPOINT_SUFFIXES)
        if not checkpoints:
            raise EvaluateError(f"no checkpoints (*.pth) in folder '{path}'")
        if s.name:
            raise EvaluateError("--name labels one model; a folder's checkpoints are labelled by their file names")
    elif path.suffix in CHECKPOINT_SUFFIXES or path.is_file():
        checkpoints = [path]
    else:
        raise EvaluateError(f"unknown model {s.model!r}: give {', '.join(BASELINES)}, a generator checkpoint (.pth) "
                            "or a folder of them")
    methods = []
    for ckpt in checkpoints:
        gen = load_generator(ckpt, prefer_ema=s.ema)
        if gen.scale != s.scale:
            raise EvaluateError(f"'{ckpt}' is a x{gen.scale} generator but --scale is {s.scale}")
        label = s.name if s.name and len(checkpoints) == 1 else ckpt.stem
        methods.append((label, str(ckpt), GeneratorMethod(gen, tile=s.tile, precision=s.precision),
                        state_digest(gen.module)))
    return methods


def _ma(s: EvaluateSettings) -> tuple[object | None, str]:
    """(Ma model, '') or (None, why it is unavailable)."""
    from srgan_lib.metrics.ma import MaUnavailable, resolve_model

    if not s.ma_model:
        return None, "no Ma model file configured (evaluate.ma.model / --ma-model)"
    try:
        return resolve_model(s.ma_model, s.ma_sha256 or None, s.ma_download), ""
    except MaUnavailable as exc:
        log.debug("Ma's score and PI unavailable: %s", exc)  # said once, in the table's footnote
        return None, str(exc)


def _lpips(s: EvaluateSettings) -> tuple[object | None, str]:
    """(LPIPS model, '') or (None, why it is unavailable)."""
    from srgan_lib.metrics.lpips import LPIPSUnavailable, resolve_lpips

    if s.lpips_net == "none":
        return None, "LPIPS turned off (evaluate.lpips.net: none / --lpips-net none)"
    if not s.lpips_weights:
        return None, "no LPIPS linear weights configured (evaluate.lpips.weights / --lpips-weights)"
    try:
        return resolve_lpips(s.lpips_net, s.lpips_weights, s.lpips_sha256, s.lpips_backbone), ""
    except LPIPSUnavailable as exc:
        log.debug("LPIPS unavailable: %s", exc)  # said once, in the table's footnote
        return None, str(exc)


def _reusable(paths: Sequence[str]) -> dict[str, tuple[str, dict[str, dict]]]:
    """weights digest -> (file, results) of earlier evaluations; files that are missing or unreadable are skipped
    with a warning (the model is then simply evaluated)."""
    out = {}
    for p in paths:
        try:
            results = json.loads(Path(p).read_text(encoding="utf-8"))
            digest = next(iter(results.values()))["weights_sha256"]
        except (OSError, ValueError, KeyError, StopIteration, TypeError, AttributeError) as exc:
            log.warning("--reuse %s: not usable (%s); evaluating instead", p, exc)
            continue
        if digest:
            out[digest] = (str(p), results)
    return out


# what must be equal for results to be reused (besides the weights and the test images)
_SAME = ("scale", "lr_source", "lr_kernel", "precision", "ma_model", "lpips")


def _reuse(found: tuple[str, dict[str, dict]] | None, sets: dict[str, list[TestImage]],
           settings: dict[str, Any]) -> dict[str, dict] | None:
    if found is None:
        return None
    _, results = found
    for name, images in sets.items():
        r = results.get(name)
        if r is None or r.get("files") != {i.name: str(i.hr) for i in images}:
            return None
        if any(r.get("settings", {}).get(k) != settings[k] for k in _SAME):
            return None
    return {name: results[name] for name in sets}


def run_evaluate(s: EvaluateSettings, on_result: Callable[[ModelEvaluation], None] | None = None
                 ) -> list[ModelEvaluation]:
    """Evaluate every model of ``s``; ``on_result`` sees each model's results as soon as they are recorded."""
    sources: dict[str, str] = {}
    sets = test_sets(s.sets, s.lists, s.scale, sources)
    methods = _methods(s)
    if len(methods) > 1 and s.json == "-":
        raise EvaluateError("--json - (stdout) takes one model; give a folder for a folder of checkpoints")
    ma_model, ma_reason = _ma(s)
    lpips_model, lpips_reason = _lpips(s)
    uri = tracking.resolve_uri(s.tracking_uri or "none")
    reusable = _reusable(s.reuse)
    done: list[ModelEvaluation] = []
    for label, checkpoint, method, digest in methods:
        start = time.perf_counter()
        precision = getattr(method, "precision", "n/a (no network)")
        settings = {"checkpoint": checkpoint, "scale": s.scale, "lr_source": s.lr_source, "lr_kernel": s.kernel,
                    "ema": s.ema, "precision": precision,
                    "ma_model": getattr(ma_model, "sha256", "") or "unavailable",
                    "lpips": f"{s.lpips_net} {s.lpips_backbone}" if lpips_model is not None else "unavailable"}
        # SR images to keep (--sr-dir) are only made by running the model
        reused = None if s.sr_dir or not digest else _reuse(reusable.get(digest), sets, settings)
        if reused is not None:
            results = {name: {**r, "model": label} for name, r in json.loads(json.dumps(reused)).items()}
            source = reusable[digest][0]
        else:
            results = evaluate(label, method, sets, scale=s.scale, lr_source=s.lr_source, kernel=s.kernel,  # type: ignore[arg-type]
                               ma_model=ma_model, ma_unavailable=ma_reason,  # type: ignore[arg-type]
                               lpips_model=lpips_model, lpips_unavailable=lpips_reason,  # type: ignore[arg-type]
                               sr_dir=Path(s.sr_dir) / label if s.sr_dir else None)
            source = None
        meta = checkpoint_meta(checkpoint) if checkpoint != "none" else {}
        for res in results.values():
            res["precision"], res["memory_format"] = precision, getattr(method, "layout", "n/a")
            if reused is None and hasattr(method, "describe_runs"):
                res["precision_runs"] = method.describe_runs()  # this model's images on all sets
            res["configuration"] = describe_meta(meta) if checkpoint != "none" else BASELINE_CONFIGURATIONS[s.model]
            res["training"], res["weights_sha256"], res["settings"] = meta, digest, settings
            res["reused_from"] = source
        json_out = str(Path(s.json) / f"{label}.json") if s.json and len(methods) > 1 else s.json
        if json_out and json_out != "-":
            write_json(json_out, results)
        unavailable = next(iter(results.values()))["unavailable"]
        run_id = tracking.log_evaluation(uri, s.experiment, label, results,
                                         settings={**settings, "reused_from": source or "no"}, metrics=NAMES,
                                         unavailable=unavailable,
                                         artifacts=[a for a in (json_out,) if a and a != "-"], datasets=sources)
        model_uri = None
        if s.log_model and run_id is not None and uri is not None and Path(checkpoint).is_file():
            from srgan_lib.registry.mlflow_model import log_generator_in_run

            info = log_generator_in_run(uri, run_id, checkpoint, metadata_={"srgan": meta,
                                        "description": describe_meta(meta)}, tags={"srgan.model": label})
            model_uri = info.model_uri
        done.append(ModelEvaluation(label, checkpoint, results, time.perf_counter() - start,
                                    json_out if json_out != "-" else None, run_id, source, settings, model_uri))
        if on_result is not None:
            on_result(done[-1])
    if s.metrics_json:
        keys = (*NAMES, "n_images")
        write_json(s.metrics_json, {e.label: {name: {k: r[k] for k in keys if k in r} for name, r in e.results.items()}
                                    for e in done})
    return done
