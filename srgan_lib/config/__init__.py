"""Configuration: ``params.yaml`` read, validated and typed (:class:`~srgan_lib.config.params.Params`)."""
