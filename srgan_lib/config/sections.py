"""The data, evaluation, report, registry and tracking sections of ``params.yaml`` (training: :mod:`.training`).

Choices come from the registries that implement them; a field's default is the library's and the CLI's default
(``srgan evaluate --kernel`` defaults to :class:`Evaluate`'s ``kernel``), declared here once.
"""

from pydantic import model_validator

from srgan_lib.config.fields import (
    Bool,
    Choice,
    Int,
    ListOf,
    NamedPath,
    NameMap,
    Number,
    Section,
    Sha256,
    Text,
    fail,
)
from srgan_lib.data.degradations import Blur, DegradationError, DegradationSettings, Noise, Resize
from srgan_lib.data.resize import KERNELS

# the reference methods of srgan_lib.evaluation.measure.BASELINES (tests/test_structure.py checks they agree)
BASELINE_NAMES: tuple[str, ...] = ("bicubic", "nearest")
LEAKAGE_CHECKS = ("near", "exact")  # near: also resized/flipped/cropped copies of test images; exact: identical pixels
LR_SOURCES = ("generate", "folder")  # the project's bicubic of HR, or the set's own LR_bicubic/X<scale>
LPIPS_NETS = ("alex", "vgg", "none")
SCALES = (2, 3, 4, 8)
DEFAULT_SCALE = 4  # the papers' x4


class Embedded(Section):
    """Stage ``embedded``: scikit-image's bundled photographs written as PNG."""

    out: Text = "data/raw/skimage"


class Lists(Section):
    """Stage ``lists``: validated training and test lists."""

    train: ListOf(Text)
    test: ListOf(NamedPath)
    min_size: Int(minimum=1) = 128  # ESRGAN's HR crop (params.yaml's embedded profile: 64)
    test_min_size: Int(minimum=1) = 16
    leakage: Choice(LEAKAGE_CHECKS) = "near"
    out: Text = "data/lists"


class Degrade(Section):
    """Stage ``degrade``: the bicubic kernel of the training LR."""

    kernel: Choice(KERNELS) = "matlab"


class Ma(Section):
    """Ma et al.'s no-reference score needs the authors' trained model."""

    model: Text
    sha256: Sha256 = ""
    download: Bool = False


class Lpips(Section):
    """LPIPS v0.1: the authors' linear layers and the backbone's ImageNet weights."""

    net: Choice(LPIPS_NETS) = "none"
    weights: Text
    sha256: Sha256 = ""  # empty: the authors' published file's
    backbone: Text = "imagenet"


class Realworld(Section):
    """Stage ``realworld``: real-world versions of test sets (``Set5-RW``: the ``degradation`` chain, one fixed draw
    per image), evaluated beside the bicubic ones."""

    sets: ListOf(Text, non_empty=False)  # test sets of lists.test
    suffix: Text = "-RW"
    seed: Int(minimum=0) = 0
    out: Text = "data/realworld"


class Evaluate(Section):
    """Stages ``evaluate_baselines`` / ``evaluate_models``."""

    lr_source: Choice(LR_SOURCES) = "generate"
    kernel: Choice(KERNELS) = "matlab"
    baselines: ListOf(Choice(BASELINE_NAMES))
    models: ListOf(Text, non_empty=False)  # recipes (checked against `recipes`)
    ma: Ma
    lpips: Lpips


class Report(Section):
    """Stage ``report``."""

    out: Text = "reports/report"
    crop: Int(minimum=16) = 96  # side of the zoomed HR crop of the comparison figures


class Register(Section):
    """Stage ``register`` and the promotion gate's rule."""

    models: ListOf(Text, non_empty=False)  # recipes (checked against `recipes`)
    prefix: Text = "srgan-"
    set: Text = "Set14"  # the test set the gate compares on
    realworld_set: Text = "Set14-RW"  # ... for generators trained on real-world degradations (degradation: realworld)
    baseline: Choice(BASELINE_NAMES) = "bicubic"
    psnr_floor: Number(0) = 1.5  # GAN versions: PSNR-Y >= the baseline's - psnr_floor
    min_gain: Number(0) = 0.0  # a new version must beat the champion by more than this
    out: Text = "reports/registry"


class Recipes(Section):
    """The one list of training recipes: each is a section of its own (:class:`~srgan_lib.config.training.Recipe`),
    trained into ``<train.models>/<name>.pth``; ``dvc.yaml``'s training stages, the CLI and the flows read it here."""

    scratch: ListOf(Text)  # trained from scratch (dvc.yaml: train_psnr@NAME)
    finetuned: NameMap  # NAME: PARENT, starting from the recipe PARENT's generator (train_gan@NAME)

    def names(self) -> tuple[str, ...]:
        """Every recipe, the ones from scratch first."""
        return (*self.scratch, *self.finetuned)


class Tracking(Section):
    """MLflow: where runs go (``none``: off) and under which experiment."""

    uri: Text
    experiment: Text = "srgan"


class Interpolate(Section):
    """Stage ``interpolate``: network interpolation between a PSNR and a GAN generator (ESRGAN section 3.4)."""

    psnr: Text
    gan: Text
    alpha: ListOf(Number(0, 1))
    out: Text


class DegradationBlur(Section):
    """One blur stage of :class:`Degradation` (probabilities in KERNEL_TYPES order)."""

    kernel_probs: ListOf(Number(0, 1))
    sigma: ListOf(Number(0))
    betag: ListOf(Number(0))
    betap: ListOf(Number(0))
    sinc_prob: Number(0, 1)
    sizes: ListOf(Int(minimum=1))


class DegradationResize(Section):
    """One resize stage: up / down / keep probabilities, the scale range, area / bilinear / bicubic probabilities."""

    probs: ListOf(Number(0, 1))
    scale: ListOf(Number(0))
    mode_probs: ListOf(Number(0, 1))


class DegradationNoise(Section):
    """One noise stage: Gaussian probability (else Poisson), sigma range (0-255), Poisson scale range, gray
    probability."""

    gaussian_prob: Number(0, 1)
    sigma: ListOf(Number(0))
    poisson_scale: ListOf(Number(0))
    gray_prob: Number(0, 1)


class Degradation(Section):
    """``degradation``: Real-ESRGAN's second-order chain (:mod:`srgan_lib.data.degradations`), which the recipes
    with ``degradation: realworld`` and the real-world test sets use; checked as a whole on load (ranges ordered,
    probabilities summing to 1, odd kernel sizes, JPEG qualities 1-100), each error naming its key."""

    blur1: DegradationBlur
    resize1: DegradationResize
    noise1: DegradationNoise
    jpeg1: ListOf(Int(minimum=0))
    blur2_prob: Number(0, 1)
    blur2: DegradationBlur
    resize2: DegradationResize
    noise2: DegradationNoise
    jpeg2: ListOf(Int(minimum=0))
    final_sinc_prob: Number(0, 1)
    sinc_first_prob: Number(0, 1)
    paired_prob: Number(0, 1) = 1.0  # a sample whose image brings its own LR (LR/X<scale>) uses it with this p

    @model_validator(mode="after")
    def _chain_holds(self) -> "Degradation":
        try:
            self.settings(DEFAULT_SCALE)
        except DegradationError as exc:
            raise fail(str(exc)) from None  # names its key: 'blur1.sigma': ...; the loader prefixes 'degradation'
        return self

    def settings(self, scale: int) -> DegradationSettings:
        """The chain's settings at ``scale`` (raises DegradationError naming a key)."""
        values = self.model_dump()
        values.pop("paired_prob")
        kinds = {"blur1": Blur, "blur2": Blur, "resize1": Resize, "resize2": Resize, "noise1": Noise, "noise2": Noise}
        for name, kind in kinds.items():
            values[name] = kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values[name].items()})
        for name in ("jpeg1", "jpeg2"):
            values[name] = tuple(values[name])
        return DegradationSettings(scale=scale, **values)
