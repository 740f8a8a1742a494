"""Which stages of dvc.yaml a sweep re-runs: those whose params a swept key falls under, and everything downstream;
the rest of what its targets need is upstream, run once in the workspace and shared through DVC's cache."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from srgan_lib.orchestration.dvc import trained_section
from srgan_lib.orchestration.sweep.grid import GridError


@dataclass(frozen=True)
class Plan:
    """A sweep's stages: ``targets`` (what each experiment reproduces), ``upstream`` (run once beforehand) and
    ``models`` (the evaluated methods it compares: ``metrics/<model>.json`` of each experiment)."""

    targets: tuple[str, ...]
    upstream: tuple[str, ...]
    models: tuple[str, ...]


def _covers(param: str, key: str) -> bool:
    return key == param or key.startswith(param + ".") or param.startswith(key + ".")


def plan(keys: Sequence[str], stages: Sequence[str] = (), *, extra_upstream: Sequence[str] = (),
         cwd: str | Path = ".") -> Plan:
    """The stages for a sweep over ``keys``; ``stages`` (default: the evaluation of every generator a key changes)
    are its targets. ``extra_upstream`` (the gate's baseline evaluation) is run beforehand too."""
    import networkx as nx
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(cwd)) as repo:
        graph = repo.index.graph  # an edge goes from a stage to a stage it depends on
        by_name = {s.addressing: s for s in repo.index.stages}
        params = {name: [p for d in s.deps if isinstance(d, ParamsDependency) for p in (d.params or [])]
                  for name, s in by_name.items()}
        direct = {n for n, ps in params.items() if any(_covers(p, k) for p in ps for k in keys)}
        affected = set(direct)
        for n in direct:
            affected |= {s.addressing for s in nx.ancestors(graph, by_name[n])}
        sections = sorted({trained_section(n) for n in affected} - {None})
        if stages:
            unknown = [s for s in stages if s not in by_name]
            if unknown:
                raise GridError(f"unknown stage {', '.join(unknown)}: `dvc stage list` names them "
                                f"(e.g. {', '.join(list(by_name)[-3:])})")
            targets = list(stages)
        else:
            targets = [f"evaluate_models@{s}" for s in sections if f"evaluate_models@{s}" in by_name]
            targets = targets or sorted(n for n in affected if n.startswith("evaluate_"))
        if not targets:
            raise GridError(f"no stage evaluates what {', '.join(keys)} changes: name the stages with --stages")
        not_affected = [t for t in targets if t not in affected]
        if not_affected:
            raise GridError(f"stage {', '.join(not_affected)} does not depend on {', '.join(keys)}: every "
                            "experiment would reproduce the same result")
        needed = set()
        for t in targets:
            needed |= {s.addressing for s in nx.descendants(graph, by_name[t])}
        upstream = (needed - affected) | {s for s in extra_upstream if s in by_name}
        order = [s.addressing for s in reversed(list(nx.topological_sort(graph)))]
        evaluated = tuple(s.partition("@")[2] for s in targets
                          if s.startswith(("evaluate_models@", "evaluate_baselines@")))
        if not evaluated:
            raise GridError(f"stages {', '.join(targets)} evaluate nothing: a sweep compares evaluations, so include "
                            "an evaluate_models@NAME or evaluate_baselines@NAME stage in --stages")
        return Plan(tuple(targets), tuple(s for s in order if s in upstream), evaluated)
