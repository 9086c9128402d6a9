"""The synthetic demo world: a LAION-layout collection with ground truth, built from a seed.

Its text encoder registers itself with :mod:`workbench.models.prompts` when
:mod:`workbench.demo.textencoder` is imported (which the models package does by name, on first need)."""
