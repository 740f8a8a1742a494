"""Real-ESRGAN's second-order degradation model (Wang et al., ICCVW 2021, sec. 3.1-3.3) as batched tensor operations
with per-sample parameters: blur (isotropic / anisotropic / generalized / plateau Gaussian kernels and sinc, one
grouped convolution for the batch), resize, Gaussian / Poisson noise, real JPEG (libjpeg through torchvision), twice,
then the final resize + sinc and JPEG in a random order. Defaults: the published x4plus options
(``../shared/DESIGN.md`` section 10).

Every per-sample draw comes from a generator seeded by (seed, iteration, sample index), the batch-level ones (resize
scales and modes, the final order: per batch as in the published code, so the batch stays one tensor) from (seed,
iteration): a batch depends on nothing else, a resumed run continues bit-identically and DDP ranks (distinct sample
indices, shared batch-level draws) draw what one process would. Unlike the published code, the Gaussian / Poisson
choice is per sample, and gray noise is one field per sample (the published code shares one across the batch).
"""

from srgan_lib.data.degradations.chain import apply, degrade_batch
from srgan_lib.data.degradations.draws import FAMILIES, Draws, KernelDraws, NoiseDraws, draw, sample_generator
from srgan_lib.data.degradations.kernels import covariance, filter_batch, gaussian_family_kernel, kernels, sinc_kernel
from srgan_lib.data.degradations.noise import (
    gaussian_noise,
    jpeg,
    noise_fields,
    poisson_levels,
    poisson_noise,
    quantize,
    to_uint8,
)
from srgan_lib.data.degradations.settings import (
    KERNEL_TYPES,
    MAX_KERNEL,
    RESIZE_MODES,
    Blur,
    DegradationError,
    DegradationSettings,
    Noise,
    Resize,
    check,
)
from srgan_lib.data.degradations.usm import usm_sharp

__all__ = ["FAMILIES", "KERNEL_TYPES", "MAX_KERNEL", "RESIZE_MODES", "Blur", "DegradationError",
           "DegradationSettings", "Draws", "KernelDraws", "Noise", "NoiseDraws", "Resize", "apply", "check",
           "covariance", "degrade_batch", "draw", "filter_batch", "gaussian_family_kernel", "gaussian_noise", "jpeg",
           "kernels", "noise_fields", "poisson_levels", "poisson_noise", "quantize", "sample_generator", "sinc_kernel",
           "to_uint8", "usm_sharp"]
