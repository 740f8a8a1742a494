"""Training: one engine for SRResNet, SRGAN, RRDBNet and ESRGAN. ``stage`` runs a stage (``train_stage``: resume
policy, data, loop, outputs, MLflow); ``trainer`` holds the models, losses, optimisers and the step; ``trajectory``
defines "the same run"; ``loop`` the loop and its callbacks; ``validation`` the validation metrics; ``distributed``
torchrun; ``data`` / ``store`` the batches; ``optim`` schedules and EMA; ``checkpoint`` the checkpoint files.
Importing this package does not import torch."""


from srgan_lib import UserError


class TrainingError(UserError):
    """A training run cannot go on; the message says why and what to do (the CLI prints it as one line)."""


class NonFiniteLoss(TrainingError):
    """A loss became NaN/inf; training stopped and the last good checkpoint is kept."""


class Diverged(TrainingError):
    """The reconstruction loss left its best value far behind and stayed there (:mod:`.divergence`); training
    stopped, its checkpoints are kept."""
