"""The data, evaluation, report, registry and tracking sections of ``params.yaml`` (training: :mod:`.training`).

Choices come from the registries that implement them; a field's default is the library's and the CLI's default
(``srgan evaluate --kernel`` defaults to :class:`Evaluate`'s ``kernel``), declared here once.
"""

from srgan_lib.config.fields import Bool, Choice, Int, ListOf, NamedPath, NameMap, Number, Section, Sha256, Text
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
