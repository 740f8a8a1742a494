"""The ``srgan`` commands, one module each (see :mod:`srgan_lib.commands._entry`)."""
