"""Test-set leakage: find training images that show a test image in another form, before they reach training.

Exact copies are caught by the pixel hash in :mod:`srgan_lib.data.lists`; this module catches the rest, on greyscale
signatures so that colour changes do not hide a copy:

- **resized or re-encoded copies**, also flipped, rotated by 90 degrees or turned grey: a 32x32 thumbnail of the whole
  image (aspect ratio ignored, so slight crops pass too) under the 8 dihedral transforms, compared by normalised
  correlation (:data:`THUMB_THRESHOLD`) when the aspect ratios agree;
- **crops**, both ways (a test image cut out of a training photograph, or a training patch cut out of a test image),
  covering at least half of the larger image's width, at any scale, under the 8 transforms: normalised
  cross-correlation of band-passed (difference-of-Gaussians) signatures, the smaller image slid over the larger one
  at :data:`CROP_SCALES` of its width (:data:`CROP_THRESHOLD`).

Band-passing makes the crop search react to structure, not to smooth gradients (two skies correlate; their textures
do not). The thresholds were set on the shared SR training photographs (T91, BSD200, BSDS500 test200, wallpapers)
against Set5 and Set14, where no unrelated pair came near them, and on synthetic crops, resizes and flips of the test
images, which all score well above them (``tests/data/test_leakage.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

THUMB = 32  # side of the whole-image thumbnail
THUMB_THRESHOLD = 0.92  # normalised correlation of two thumbnails
THUMB_CANDIDATE = 0.8  # thumbnails this close are verified as near-whole crops
ASPECT_TOLERANCE = 0.12  # relative aspect-ratio difference allowed for a whole-image match
WIDTH = 64  # width of the larger image in the coarse crop search
CROP_SCALES = (*(0.5 * 1.15**k for k in range(5)), 1.0)  # smaller image's width / larger image's width
COARSE_THRESHOLD = 0.6  # coarse matches at least this good are verified
MAX_VERIFY = 5  # candidates verified per training image (best first)
VERIFY_WIDTH = 160  # width of the larger image in the verification
VERIFY_STEPS = tuple(0.92 + 0.02 * k for k in range(9))  # scales around the coarse one
VERIFY_SIGMAS = (1.2, 3.0)  # the finer band compared in the verification
CROP_THRESHOLD = 0.75  # normalised cross-correlation of the verified match
MIN_TEMPLATE = 12  # pixels: a smaller template carries too little structure to decide


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma in [0, 1] as float32 (what the signatures are made of)."""
    return (rgb[..., :3].astype(np.float32) @ np.asarray([0.299, 0.587, 0.114], np.float32)) / 255.0


def resize(grey: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-averaged (antialiased) resize of a float32 greyscale array."""
    img = Image.fromarray(np.ascontiguousarray(grey, dtype=np.float32), mode="F")
    return np.asarray(img.resize((max(width, 1), max(height, 1)), Image.Resampling.BOX), dtype=np.float32)


def dihedral(grey: np.ndarray) -> list[np.ndarray]:
    """The 8 flips and 90-degree rotations of an image (the augmentations a copy may have gone through)."""
    out = []
    for t in (grey, grey.T):
        out += [t, t[:, ::-1], t[::-1], t[::-1, ::-1]]
    return [np.ascontiguousarray(o) for o in out]


def band_pass(grey: np.ndarray, sigmas: tuple[float, float] = (1.0, 2.5)) -> np.ndarray:
    """Difference of Gaussians (``sigmas`` in pixels): edges and texture, no smooth gradients."""
    return (ndimage.gaussian_filter(grey, sigmas[0]) - ndimage.gaussian_filter(grey, sigmas[1])).astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    x = x - x.mean()
    n = float(np.linalg.norm(x))
    return x / n if n > 1e-6 else np.zeros_like(x)


def _at_width(grey: np.ndarray, width: int = WIDTH) -> np.ndarray:
    return resize(grey, max(round(width * grey.shape[0] / grey.shape[1]), 1), width)


def _at_short_side(grey: np.ndarray, side: int) -> np.ndarray:
    """``grey`` reduced so its short side is ``side`` (kept as it is when already smaller)."""
    short = min(grey.shape)
    if short <= side:
        return grey
    return resize(grey, round(grey.shape[0] * side / short), round(grey.shape[1] * side / short))


def _scaled(grey: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """``grey`` resized to each of :data:`CROP_SCALES` of :data:`WIDTH` and band-passed: the crop templates."""
    out = []
    for r in CROP_SCALES:
        tw = round(WIDTH * r)
        th = round(tw * grey.shape[0] / grey.shape[1])
        if min(th, tw) >= MIN_TEMPLATE:
            out.append((r, band_pass(resize(grey, th, tw))))
    return out


def _padded_fft(zero_mean: list[np.ndarray], shape: tuple[int, int]) -> torch.Tensor:
    """Conjugated FFTs of templates zero-padded to ``shape`` (M x H x W//2+1)."""
    stack = torch.zeros((len(zero_mean), *shape), dtype=torch.float32)
    for j, t in enumerate(zero_mean):
        stack[j, : t.shape[0], : t.shape[1]] = torch.from_numpy(t)
    return torch.fft.rfft2(stack).conj()


class Canvases:
    """Images of one shape (N x H x W) prepared for normalised cross-correlation with templates that fit inside:
    their FFTs and summed-area tables, computed once."""

    def __init__(self, images: list[np.ndarray]) -> None:
        stack = torch.from_numpy(np.stack(images).astype(np.float32))
        self.count, self.shape = stack.shape[0], (stack.shape[1], stack.shape[2])
        self.fft = torch.fft.rfft2(stack)
        pad = torch.nn.functional.pad(stack, (1, 0, 1, 0)).double()
        self.integral, self.integral2 = pad.cumsum(1).cumsum(2), (pad**2).cumsum(1).cumsum(2)

    def best_ncc(self, templates: list[np.ndarray], template_fft: torch.Tensor | None = None) -> torch.Tensor:
        """N x M: the largest normalised cross-correlation of each template over each image, over the positions
        where the template lies fully inside. Templates must fit; ``template_fft`` (from :func:`_padded_fft` of the
        zero-mean templates at this shape) saves recomputing them."""
        h, w = self.shape
        zero_mean = [t - t.mean() for t in templates]
        if template_fft is None:
            template_fft = _padded_fft(zero_mean, (h, w))
        corr = torch.fft.irfft2(self.fft[:, None] * template_fft[None], s=(h, w))  # N x M x H x W (circular)
        out = torch.full((self.count, len(templates)), -1.0)
        by_shape: dict[tuple[int, int], list[int]] = {}
        for j, t in enumerate(zero_mean):
            by_shape.setdefault(t.shape, []).append(j)
        for (th, tw), idx in by_shape.items():
            area = th * tw

            def window(a: torch.Tensor, th: int = th, tw: int = tw) -> torch.Tensor:
                return a[:, th:, tw:] - a[:, :-th, tw:] - a[:, th:, :-tw] + a[:, :-th, :-tw]

            var = (window(self.integral2) - window(self.integral) ** 2 / area).float()  # N x h' x w'
            norms = torch.tensor([float(np.linalg.norm(zero_mean[j])) for j in idx])
            valid = corr[:, idx, : h - th + 1, : w - tw + 1]  # positions fully inside: no wrap-around
            ncc = valid / (var.clamp_min(1e-12).sqrt()[:, None] * norms.clamp_min(1e-12)[None, :, None, None])
            ncc = ncc.masked_fill((var < 1e-6 * area)[:, None], -1.0)  # flat windows decide nothing
            out[:, idx] = ncc.flatten(2).amax(dim=2).masked_fill((norms < 1e-6)[None], -1.0)
        return out


@dataclass(frozen=True)
class Leak:
    """A training image that shows a test image: which one, how, and the match score."""

    test: str
    how: str
    score: float


@dataclass(frozen=True)
class _Candidate:
    """A crop match found by the coarse search, to be verified: test image, its transform, scale, direction."""

    test: str
    transform: int
    scale: float
    test_inside: bool  # True: the test image lies inside the training image; False: the other way round
    coarse: float


def _verify(container: np.ndarray, template: np.ndarray, scale: float) -> float:
    """Normalised cross-correlation of the finer band of ``template`` slid over ``container`` at
    :data:`VERIFY_WIDTH`, around the coarse ``scale`` (the template's width / the container's width)."""
    canvas = band_pass(_at_width(container, VERIFY_WIDTH), VERIFY_SIGMAS)
    templates = []
    for f in VERIFY_STEPS:
        tw = round(VERIFY_WIDTH * scale * f)
        th = round(tw * template.shape[0] / template.shape[1])
        if 0 < th <= canvas.shape[0] and 0 < tw <= canvas.shape[1]:
            templates.append(band_pass(resize(template, th, tw), VERIFY_SIGMAS))
    return float(Canvases([canvas]).best_ncc(templates).max()) if templates else -1.0


class LeakageIndex:
    """The test images of every test set, ready to be compared with training images (:meth:`match`)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._thumbs: list[tuple[str, np.ndarray, float]] = []  # name, unit thumbnail, aspect (8 transforms each)
        self._bases: dict[str, np.ndarray] = {}  # luma at VERIFY_WIDTH (short side), for verification
        self._canvas_images: dict[tuple[int, int], list[tuple[str, int, np.ndarray]]] = {}  # name, transform, image
        self._canvases: dict[tuple[int, int], tuple[list[tuple[str, int]], Canvases]] = {}
        self._templates: list[tuple[str, int, float, np.ndarray]] = []  # name, transform, scale, zero-mean template
        self._fft_cache: dict[tuple[int, int], tuple[list[int], torch.Tensor]] = {}

    def add(self, name: str, rgb: np.ndarray) -> None:
        """Register one test image under ``name`` (e.g. ``Set14/baboon``)."""
        y = luma(rgb)
        self.names.append(name)
        aspect = y.shape[0] / y.shape[1]
        for i, d in enumerate(dihedral(resize(y, THUMB, THUMB))):
            self._thumbs.append((name, _unit(d.ravel()), aspect if i < 4 else 1 / aspect))
        self._bases[name] = _at_short_side(y, VERIFY_WIDTH)
        for k, d in enumerate(dihedral(_at_short_side(y, WIDTH))):  # each orientation at least WIDTH wide
            canvas = band_pass(_at_width(d))
            self._canvas_images.setdefault(canvas.shape, []).append((name, k, canvas))
            self._templates += [(name, k, r, t - t.mean()) for r, t in _scaled(d)]
        self._fft_cache.clear()
        self._canvases.clear()

    def __len__(self) -> int:
        return len(self.names)

    def _test_templates(self, shape: tuple[int, int]) -> tuple[list[int], torch.Tensor]:
        """Indices of the test templates that fit a canvas of ``shape``, and their padded FFTs (cached per shape)."""
        if shape not in self._fft_cache:
            fits = [i for i, (*_, t) in enumerate(self._templates) if t.shape[0] <= shape[0] and t.shape[1] <= shape[1]]
            self._fft_cache[shape] = (fits, _padded_fft([self._templates[i][3] for i in fits], shape))
            if len(self._fft_cache) > 16:
                self._fft_cache.pop(next(iter(self._fft_cache)))
        return self._fft_cache[shape]

    def _test_canvases(self) -> dict[tuple[int, int], tuple[list[tuple[str, int]], Canvases]]:
        if not self._canvases:
            self._canvases = {shape: ([(n, k) for n, k, _ in group], Canvases([c for *_, c in group]))
                              for shape, group in self._canvas_images.items()}
        return self._canvases

    def _candidates(self, grey: np.ndarray) -> list[_Candidate]:
        """Coarse crop matches of a training image (luma at WIDTH) above :data:`COARSE_THRESHOLD`, best first."""
        found: list[_Candidate] = []
        # a test image cut out of this training image: every scaled test template slid over the training image
        canvas = Canvases([band_pass(grey)])
        fits, fft = self._test_templates(canvas.shape)
        if fits:
            scores = canvas.best_ncc([self._templates[i][3] for i in fits], fft)[0]
            for j in torch.nonzero(scores >= COARSE_THRESHOLD).flatten().tolist():
                name, k, r, _ = self._templates[fits[j]]
                found.append(_Candidate(name, k, r, True, float(scores[j])))
        # this training image cut out of a test image: the training image, scaled, slid over every test image
        scaled = _scaled(grey)
        for shape, (keys, canvases) in self._test_canvases().items():
            fitting = [(r, t) for r, t in scaled if t.shape[0] <= shape[0] and t.shape[1] <= shape[1]]
            if fitting:
                scores = canvases.best_ncc([t for _, t in fitting])  # test canvases x scales
                for i, j in torch.nonzero(scores >= COARSE_THRESHOLD).tolist():
                    found.append(_Candidate(keys[i][0], keys[i][1], fitting[j][0], False, float(scores[i, j])))
        return sorted(found, key=lambda c: -c.coarse)

    def closest(self, rgb: np.ndarray) -> tuple[Leak | None, Leak | None]:
        """The best whole-image match and the best verified crop match of a training image (thresholds not applied;
        crop candidates below :data:`COARSE_THRESHOLD` are not verified)."""
        if not self.names:
            return None, None
        y = luma(rgb)
        aspect = y.shape[0] / y.shape[1]
        thumb = _unit(resize(y, THUMB, THUMB).ravel())
        whole: Leak | None = None
        near_copies: list[_Candidate] = []
        for i, (name, t, a) in enumerate(self._thumbs):
            if abs(a - aspect) <= ASPECT_TOLERANCE * max(a, aspect):
                score = float(t @ thumb)
                if whole is None or score > whole.score:
                    whole = Leak(name, "a resized copy", score)
                if score >= THUMB_CANDIDATE:  # nearly the whole image: a crop of a few per cent either way
                    near_copies += [_Candidate(name, i % 8, 1.0, inside, score) for inside in (True, False)]
        crop: Leak | None = None
        fine = _at_short_side(y, VERIFY_WIDTH)
        tried: set[tuple[str, int, bool, float]] = set()
        candidates = []
        for c in sorted(near_copies, key=lambda c: -c.coarse) + self._candidates(_at_width(y)):
            candidates.append(c)
            if c.scale >= 0.85:  # the two directions meet at the same size: try the other one too
                candidates.append(_Candidate(c.test, c.transform, c.scale, not c.test_inside, c.coarse))
        for c in candidates:
            key = (c.test, c.transform, c.test_inside, c.scale)
            if key in tried or len(tried) >= MAX_VERIFY:
                continue
            tried.add(key)
            test = dihedral(self._bases[c.test])[c.transform]
            score = _verify(fine, test, c.scale) if c.test_inside else _verify(test, fine, c.scale)
            if crop is None or score > crop.score:
                how = "holds it as a crop" if c.test_inside else "is a crop of it"
                crop = Leak(c.test, f"{how} (about {c.scale:.2f} of the width)", score)
        return whole, crop

    def match(self, rgb: np.ndarray) -> Leak | None:
        """The test image this training image shows, or None: a whole-image match at :data:`THUMB_THRESHOLD` or
        more, else a verified crop match at :data:`CROP_THRESHOLD` or more."""
        return self.decide(*self.closest(rgb))

    @staticmethod
    def decide(whole: Leak | None, crop: Leak | None) -> Leak | None:
        """The leak that the scores of :meth:`closest` prove, if any."""
        if whole is not None and whole.score >= THUMB_THRESHOLD:
            return whole
        return crop if crop is not None and crop.score >= CROP_THRESHOLD else None
