"""Rewrite dvc.yaml's code deps: each stage's srgan_lib lines become exactly the modules its command can run (its
import closure; tests/test_structure.py fails until they agree).   python tools/dvc_code_deps.py"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from srgan_lib.orchestration.imports import fix_dvc_yaml

if __name__ == "__main__":
    if sys.argv[1:]:
        raise SystemExit(__doc__)
    print("dvc.yaml code deps rewritten for:", ", ".join(fix_dvc_yaml()) or "nothing (already exact)")
