"""Training: one engine for SRResNet, SRGAN, RRDBNet and ESRGAN (``engine``: the Trainer and ``train_stage``), the
loop and its callbacks (``loop``), the data sampler (``data``), schedules and EMA (``optim``) and checkpoints
(``checkpoint``). Importing this package does not import torch."""


from srgan_lib import UserError


class TrainingError(UserError):
    """A training run cannot go on; the message says why and what to do (the CLI prints it as one line)."""


class NonFiniteLoss(TrainingError):
    """A loss became NaN/inf; training stopped and the last good checkpoint is kept."""
