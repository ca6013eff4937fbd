"""RestoreVAR: all-in-one image restoration with visual autoregressive models.

    from restorevar import RestoreVAR
    model = RestoreVAR.from_pretrained()          # the bundled default model
    model.restore("hazy.jpg").save("clean.png")
"""

__version__ = "0.1.0"

_LAZY = {
    "RestoreVAR": "pipeline",
    "Restoration": "pipeline",
    "RestoreVARConfig": "config",
    "TokenizerConfig": "config",
    "TransformerConfig": "config",
    "RefinerConfig": "config",
    "get_preset": "presets",
    "list_presets": "presets",
}
__all__ = list(_LAZY)


def __getattr__(name: str):
    # torch is imported only when the model is asked for, so `restorevar --help` stays fast
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'restorevar' has no attribute {name!r}")
