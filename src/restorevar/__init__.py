"""RestoreVAR: all-in-one image restoration with visual autoregressive models.

import restorevar
restorer = restorevar.Restorer.from_pretrained()     # the bundled default model
restorer.restore("hazy.jpg").save("clean.png")
model = restorevar.from_pretrained("restorevar-small")  # the bare model: model.restore_batch(images_B3HW)
"""

__version__ = "0.1.0"

_LAZY = {
    "from_pretrained": ("models.registry", "load_model"),
    "list_models": ("models.registry", "list_models"),
    "Restorer": ("inference.pipeline", "Restorer"),
    "Restoration": ("models.interface", "Restoration"),
    "RestoreVAR": ("models.restorevar.model", "RestoreVAR"),
    "ExtendedRestoreVAR": ("models.extensions.model", "ExtendedRestoreVAR"),
    "RestoreVARConfig": ("models.restorevar.config", "RestoreVARConfig"),
    "get_preset": ("models.presets", "get_preset"),
    "list_presets": ("models.presets", "list_presets"),
}
__all__ = list(_LAZY)


def __getattr__(name: str):
    # torch is imported only when the model is asked for, so `restorevar --help` stays fast
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attribute)
    raise AttributeError(f"module 'restorevar' has no attribute {name!r}")
