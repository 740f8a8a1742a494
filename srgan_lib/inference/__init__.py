"""Upscaling: the :class:`~srgan_lib.inference.upscaler.Upscaler` on arrays and images, its tiles and their tuner,
and batches of files."""
