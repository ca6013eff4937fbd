"""Model families behind one interface (`interface.py`), a registry from `model_type` to class, checkpoint I/O and
shared layers. Imports nothing from the rest of the package."""
