"""Ma's score (Ma, Yang, Yang and Yang 2017, "Learning a no-reference quality metric for single-image
super-resolution", CVIU 158) and the PIRM 2018 perceptual index ``PI = ((10 - Ma) + NIQE) / 2``.

The score is the authors' two-stage regression on three groups of low-level statistics of the image's luma:

1. local frequency (18): 7x7 DCTs centred on every 3x3 block (MATLAB ``blkproc(im, [3 3], [2 2], @dct2)``), at three
   levels of a Gaussian pyramid: generalised-Gaussian shape of the AC coefficients, their coefficient of variation
   and the variance of that over three orientation regions, each pooled as the mean of its worst 10 % and its mean;
2. global spatial (45): a two-scale, six-orientation complex steerable pyramid (matlabPyrTools' ``buildSCFpyr``),
   divisively normalised by a Gaussian scale mixture over spatial, parent and orientation neighbours; the
   generalised-Gaussian shape of each subband and of each orientation across scales, and the structural similarity of
   each subband with the high-pass residual and between orientations;
3. spatial discontinuity (75): the singular values of the matrix of non-overlapping 5x5 patches at each pyramid level.

Each group goes through its own random forest and a linear model combines the three predictions. Those are trained on
the authors' human study and live in their ``model.mat`` (https://github.com/chaoma99/sr-metric), which this module
loads from a configured path and never replaces by anything else: without it there is no Ma score (and no PI), and
:class:`MaUnavailable` says why. The feature code follows the paper and the authors' MATLAB as published; it is not
calibrated against MATLAB output here (no MATLAB, no model file on the build machines), unlike NIQE.
"""

from __future__ import annotations

import logging
import shutil
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from srgan_lib.io.images import file_sha256
from srgan_lib.metrics.ma_features import ma_features
from srgan_lib.metrics.psnr_ssim import matlab_luma

log = logging.getLogger(__name__)

MODEL_URL = "https://github.com/chaoma99/sr-metric/raw/master/model.mat"


class MaUnavailable(RuntimeError):
    """Ma's score cannot be computed here (no model file, wrong checksum, unreadable file); the message says why."""


# ------------------------------------------------------------------------------------------------------ statistics

# --------------------------------------------------------------------------------------------- the regression


@dataclass
class RegressionForest:
    """A regression random forest in randomForest-matlab's ``regRF`` layout (one column per tree, 1-based children,
    ``nodestatus == -1`` for leaves, split ``x[mbest] <= upper`` goes left, leaf value ``avnode``)."""

    left: np.ndarray
    right: np.ndarray
    status: np.ndarray
    threshold: np.ndarray
    value: np.ndarray
    variable: np.ndarray

    @property
    def n_trees(self) -> int:
        return self.left.shape[1]

    def predict(self, x: np.ndarray) -> float:
        """The mean over trees of the leaf each tree sends ``x`` to."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        total = 0.0
        for t in range(self.n_trees):
            k = 0
            while self.status[k, t] != -1 and self.left[k, t] > 0:
                k = int(self.left[k, t] if x[int(self.variable[k, t]) - 1] <= self.threshold[k, t]
                        else self.right[k, t]) - 1
            total += float(self.value[k, t])
        return total / self.n_trees


@dataclass
class MaModel:
    """The authors' trained model: three forests (one per feature group) and the linear stage ``[1 s1 s2 s3] @ w``."""

    forests: tuple[RegressionForest, RegressionForest, RegressionForest]
    linear: np.ndarray
    source: str = ""
    sha256: str = ""

    def predict(self, features: tuple[np.ndarray, np.ndarray, np.ndarray]) -> float:
        stage1 = [forest.predict(f) for forest, f in zip(self.forests, features, strict=True)]
        return float(np.dot(np.r_[1.0, stage1], self.linear))

    def score(self, img: np.ndarray, *, shave: int = 0) -> float:
        """Ma's score of an RGB uint8 (or 0-255 luma) image; higher is better (roughly 0-10)."""
        return self.predict(ma_features(matlab_luma(img, shave)))


_FOREST_FIELDS = ("lDau", "rDau", "nodestatus", "upper", "avnode", "mbest")


def _forest_from_struct(rf: np.ndarray, where: str) -> RegressionForest:
    names = rf.dtype.names or ()
    if all(f in names for f in _FOREST_FIELDS):
        arrays = [np.asarray(rf[f][0, 0]) for f in _FOREST_FIELDS]
    elif len(names) >= 7:  # positional regRF layout (lDau, rDau, nodestatus, nrnodes, upper, avnode, mbest, ...)
        arrays = [np.asarray(rf[names[i]][0, 0]) for i in (0, 1, 2, 4, 5, 6)]
    else:
        raise MaUnavailable(f"{where}: not a regRF random forest (fields {list(names)})")
    left, right, status, upper, avnode, mbest = (a.reshape(a.shape[0], -1) for a in arrays)
    return RegressionForest(left.astype(np.int64), right.astype(np.int64), status.astype(np.int64),
                            upper.astype(np.float64), avnode.astype(np.float64), mbest.astype(np.int64))


def load_model(path: str | Path, sha256: str | None = None) -> MaModel:
    """Read the authors' ``model.mat`` (struct ``model`` with ``rf`` = 3 regRF forests and ``linear`` 4x1)."""
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise MaUnavailable(f"Ma model file not found: {path} (see docs/evaluation.md, 'Ma's score and the "
                            "perceptual index')")
    digest = file_sha256(path)
    if sha256 and digest != sha256.lower():
        raise MaUnavailable(f"Ma model file {path} has sha256 {digest}, expected {sha256}: a different or damaged "
                            "file; download it again or fix evaluate.ma.sha256")
    try:
        mat = loadmat(path)
        model = mat["model"]
        rfs, linear = model["rf"][0, 0], np.asarray(model["linear"][0, 0], dtype=np.float64).reshape(-1)
        forests = tuple(_forest_from_struct(rfs.flat[i], f"{path}: rf{{{i + 1}}}") for i in range(3))
    except MaUnavailable:
        raise
    except Exception as exc:
        raise MaUnavailable(f"cannot read Ma model file {path}: {type(exc).__name__}: {exc}") from exc
    if linear.shape != (4,):
        raise MaUnavailable(f"{path}: model.linear has {linear.size} weights, expected 4")
    return MaModel(forests, linear, source=str(path), sha256=digest)  # type: ignore[arg-type]


def download_model(dest: str | Path, sha256: str, url: str = MODEL_URL) -> Path:
    """Download the authors' model file to ``dest``, verifying ``sha256`` before it is put in place."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    log.info("downloading Ma's model from %s", url)
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as f:
            shutil.copyfileobj(resp, f)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise MaUnavailable(f"cannot download Ma's model from {url}: {exc}") from exc
    digest = file_sha256(tmp)
    if digest != sha256.lower():
        tmp.unlink(missing_ok=True)
        raise MaUnavailable(f"downloaded {url} has sha256 {digest}, expected {sha256}: refusing to use it")
    tmp.replace(dest)
    return dest


@lru_cache(maxsize=4)
def resolve_model(path: str, sha256: str | None = None, download: bool = False, url: str = MODEL_URL) -> MaModel:
    """The model at ``path``; when it is missing and ``download`` is on, fetched from ``url`` if ``sha256`` pins it.
    Raises :class:`MaUnavailable` with the reason otherwise (the caller records it; nothing is estimated)."""
    if not Path(path).is_file() and download:
        if not sha256:
            raise MaUnavailable(f"Ma model file not found: {path}; downloading needs evaluate.ma.sha256 (the "
                                "checksum of the authors' file) so that an unverified file is never used")
        download_model(path, sha256, url)
    return load_model(path, sha256)


def perceptual_index(ma: float, niqe: float) -> float:
    """PIRM 2018: ``((10 - Ma) + NIQE) / 2``; lower is better."""
    return ((10.0 - ma) + niqe) / 2.0
