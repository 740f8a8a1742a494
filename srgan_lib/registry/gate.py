"""The promotion gate of the model registry: does a new generator version replace the ``champion``?

PSNR-oriented generators are compared on PSNR-Y; GAN generators on a perceptual score (the first of PI, LPIPS,
NIQE that both versions have; lower is better) and must keep PSNR-Y above a floor (the baseline's PSNR-Y minus
``psnr_floor``: a GAN that paints textures but loses the picture is not promoted). Pure functions on metric
dictionaries: the registration itself is :mod:`srgan_lib.registry.stage`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from srgan_lib import UserError
from srgan_lib.config.fields import default
from srgan_lib.config.sections import Register

Kind = Literal["psnr", "gan"]
PERCEPTUAL_ORDER: tuple[str, ...] = ("pi", "lpips", "niqe")  # the GAN gate's score, best-founded first
CHAMPION, CHALLENGER = "champion", "challenger"


class GateError(UserError, ValueError):
    """The gate cannot decide (a metric is missing from the evaluation): the message names it."""


@dataclass(frozen=True)
class GateRule:
    """``params.yaml`` ``register``: the test set the versions are compared on (the real-world one for generators
    trained on real-world degradations) and the GAN floor."""

    test_set: str = default(Register, "set")
    psnr_floor: float = default(Register, "psnr_floor")  # GAN versions: PSNR-Y >= baseline's - psnr_floor
    min_gain: float = default(Register, "min_gain")  # the margin over the champion (dB or points)
    realworld_set: str = default(Register, "realworld_set")  # the test set of generators trained on real-world LR

    def for_model(self, meta: Mapping[str, object]) -> GateRule:
        """The rule for a generator with checkpoint ``meta``: one trained on real-world degradations is compared on
        the real-world set (its bicubic-world numbers are not what it was made for), the rest on ``test_set``."""
        if meta.get("degradation") == "realworld":
            return replace(self, test_set=self.realworld_set)
        return self


@dataclass(frozen=True)
class Decision:
    """What the gate decided and why, with both scores (tags of the new version)."""

    alias: str  # champion | challenger
    metric: str
    score: float
    champion_score: float | None
    reason: str

    def tags(self) -> dict[str, str]:
        return {"gate.decision": self.alias, "gate.metric": self.metric, "gate.score": f"{self.score:.6g}",
                "gate.champion_score": "none" if self.champion_score is None else f"{self.champion_score:.6g}",
                "gate.reason": self.reason}


def _value(metrics: Mapping[str, float], name: str) -> float | None:
    v = metrics.get(name)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def gate_metric(kind: Kind, new: Mapping[str, float], champion: Mapping[str, float] | None) -> str:
    """The metric a ``kind`` generator is judged on: PSNR-Y, or the first perceptual score both versions have."""
    if kind == "psnr":
        return "psnr_y"
    for name in PERCEPTUAL_ORDER:
        if _value(new, name) is not None and (champion is None or _value(champion, name) is not None):
            return name
    raise GateError(f"no perceptual score ({', '.join(PERCEPTUAL_ORDER)}) in the evaluation of this version"
                    + ("" if champion is None else " and the champion"))


def decide(kind: Kind, new: Mapping[str, float], champion: Mapping[str, float] | None,
           baseline: Mapping[str, float] | None, rule: GateRule) -> Decision:
    """Champion or challenger for a new version with metrics ``new`` on the rule's test set."""
    metric = gate_metric(kind, new, champion)
    score = _value(new, metric)
    if score is None:
        raise GateError(f"the evaluation has no {metric} on {rule.test_set}")
    if kind == "gan":
        psnr, base = _value(new, "psnr_y"), None if baseline is None else _value(baseline, "psnr_y")
        if psnr is None or base is None:
            raise GateError(f"the GAN gate needs PSNR-Y of this version and of the baseline on {rule.test_set}")
        floor = base - rule.psnr_floor
        if psnr < floor:
            return Decision(CHALLENGER, metric, score, _value(champion or {}, metric),
                            f"PSNR-Y {psnr:.2f} dB below the floor {floor:.2f} (baseline - {rule.psnr_floor:g})")
    old = None if champion is None else _value(champion, metric)
    if old is None:
        return Decision(CHAMPION, metric, score, None, "first version to pass the gate")
    lower_better = metric != "psnr_y"
    gain = (old - score) if lower_better else (score - old)
    if gain > rule.min_gain:
        return Decision(CHAMPION, metric, score, old, f"{metric} {score:.4g} beats the champion's {old:.4g}")
    return Decision(CHALLENGER, metric, score, old, f"{metric} {score:.4g} does not beat the champion's {old:.4g}"
                    + (f" by more than {rule.min_gain:g}" if rule.min_gain else ""))


def metric_tags(results: Mapping[str, Mapping[str, float]]) -> dict[str, str]:
    """``{'Set5': {'psnr_y': 29.0}}`` -> ``{'metric.Set5.psnr_y': '29'}``: a version's numbers, readable back."""
    return {f"metric.{s}.{m}": f"{v:.6g}" for s, r in results.items() for m, v in r.items()
            if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))}


def metrics_from_tags(tags: Mapping[str, str], test_set: str) -> dict[str, float]:
    """The metrics of one test set back from a version's tags (:func:`metric_tags`)."""
    prefix = f"metric.{test_set}."
    return {k.removeprefix(prefix): float(v) for k, v in tags.items() if k.startswith(prefix)}
