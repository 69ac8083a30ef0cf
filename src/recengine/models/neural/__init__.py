"""Neural sequential recommenders (PyTorch, an optional dependency): one module per model.

The model classes import without torch, so the registry lists them everywhere; fitting, scoring or loading one
without torch raises NotSupportedError saying what to install.
"""
