"""Training: one engine for SRResNet, SRGAN, RRDBNet and ESRGAN (``engine``), its data sampler (``data``),
schedules and EMA (``optim``) and checkpoints (``checkpoint``). Importing this package does not import torch."""


from srgan_lib import UserError


class TrainingError(UserError):
    """A training run cannot go on; the message says why and what to do (the CLI prints it as one line)."""
