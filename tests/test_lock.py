"""dvc.lock is never stale: every dependency of every locked stage that git tracks (the code, the committed data)
hashes, as DVC hashes it, to what the lock says. A library edit committed without its refreshed lock fails here,
naming the stage, instead of re-running stages in a user's fresh clone and leaving `git status` dirty."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _tracked(root: Path) -> set[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    return {p for p in out.decode().split("\0") if p}


def dvc_md5(root: Path, path: str, tracked: set[str]) -> str | None:
    """DVC 3's md5 of a file (its bytes) or of a folder (md5 of the sorted JSON list of {md5, relpath} of its files,
    + '.dir'), over the files git tracks; None when git tracks nothing there (a stage's output, not code)."""
    if path in tracked:
        return hashlib.md5((root / path).read_bytes()).hexdigest()
    files = sorted(p for p in tracked if p.startswith(path.rstrip("/") + "/"))
    if not files:
        return None
    entries = [{"md5": hashlib.md5((root / f).read_bytes()).hexdigest(), "relpath": f[len(path) + 1:]} for f in files]
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def stale_deps(root: Path) -> dict[str, list[str]]:
    """Stage -> its git-tracked deps whose hash differs from dvc.lock's."""
    lock = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8"))
    tracked = _tracked(root)
    stale: dict[str, list[str]] = {}
    for stage, entry in lock["stages"].items():
        for dep in entry.get("deps", []):
            now = dvc_md5(root, dep["path"], tracked)
            if now is not None and now != dep["md5"]:
                stale.setdefault(stage, []).append(dep["path"])
    return stale


def test_the_hash_is_dvcs():
    # hand-checked against DVC: a file's md5 is its bytes'; a folder of one file has the documented .dir form
    tracked = {"README.md"}
    assert dvc_md5(ROOT, "README.md", tracked) == hashlib.md5((ROOT / "README.md").read_bytes()).hexdigest()
    listing = json.dumps([{"md5": hashlib.md5((ROOT / "srgan_lib/__init__.py").read_bytes()).hexdigest(),
                           "relpath": "__init__.py"}], sort_keys=True)
    assert dvc_md5(ROOT, "srgan_lib", {"srgan_lib/__init__.py"}) == hashlib.md5(listing.encode()).hexdigest() + ".dir"
    assert dvc_md5(ROOT, "models/esrgan.pth", tracked) is None


def test_dvc_lock_matches_the_committed_code_and_data():
    stale = stale_deps(ROOT)
    assert not stale, ("dvc.lock is stale (a library or data edit without its lock: run `srgan repro` in a fresh "
                       f"clone, or `dvc repro` of these stages, and commit dvc.lock): {stale}")
