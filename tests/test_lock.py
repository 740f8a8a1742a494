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


def test_the_hash_is_dvcs(tmp_path):
    """The hash above against DVC's own: a real `dvc repro` of a stage depending on a file and on a folder with a
    subfolder writes dvc.lock; dvc_md5 gives the same md5 for both."""
    import sys

    repo = tmp_path / "r"
    (repo / "code" / "sub").mkdir(parents=True)
    (repo / "code" / "a.py").write_text("print('a')\n")
    (repo / "code" / "sub" / "b.py").write_text("x = 1\n")
    (repo / "data.txt").write_bytes(b"\x00\x01 bytes\r\n")
    dvc = str(Path(sys.executable).parent / "dvc")
    env = {"DVC_NO_ANALYTICS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    add = [dvc, "stage", "add", "-q", "-n", "s", "-d", "code", "-d", "data.txt", "echo done"]
    for cmd in (["git", "init", "-q"], [dvc, "init", "-q"], add, [dvc, "repro", "-q"]):
        subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True)
    lock = {d["path"]: d["md5"] for d in yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["s"]["deps"]}
    tracked = {"code/a.py", "code/sub/b.py", "data.txt"}
    assert lock == {p: dvc_md5(repo, p, tracked) for p in ("code", "data.txt")}
    assert lock["code"].endswith(".dir") and dvc_md5(repo, "models/x.pth", tracked) is None


def test_dvc_lock_matches_the_committed_code_and_data():
    stale = stale_deps(ROOT)
    assert not stale, ("dvc.lock is stale (a library or data edit without its lock: run `srgan repro` in a fresh "
                       f"clone, or `dvc repro` of these stages, and commit dvc.lock): {stale}")
