"""RestoreVAR: all-in-one image restoration with visual autoregressive models.

    from restorevar import RestoreVAR
    model = RestoreVAR.from_pretrained()          # the bundled default model
    model.restore("hazy.jpg").save("clean.png")
"""

__version__ = "0.1.0"

_LAZY = {
    "RestoreVAR": "models.restorevar.model",
    "Restoration": "models.restorevar.model",
    "RestoreVARConfig": "models.restorevar.config",
    "TokenizerConfig": "models.restorevar.config",
    "TransformerConfig": "models.restorevar.config",
    "RefinerConfig": "models.restorevar.config",
    "get_preset": "models.registry",
    "list_presets": "models.registry",
}
__all__ = list(_LAZY)


def __getattr__(name: str):
    # torch is imported only when the model is asked for, so `restorevar --help` stays fast
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'restorevar' has no attribute {name!r}")
