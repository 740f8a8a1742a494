"""Typed settings: one pydantic model per ``params.yaml`` section (the CLI's defaults are the models' defaults).

The section models live in small modules so that a stage's import closure holds only the sections it reads;
:mod:`srgan_lib.config` assembles them into :class:`~srgan_lib.config.Params` and loads parameter files.
"""
