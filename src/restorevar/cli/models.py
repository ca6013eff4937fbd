"""`restorevar list`: the models and presets available offline."""

from __future__ import annotations

EXAMPLE = "example: restorevar list"


def add_parser(commands) -> None:
    p = commands.add_parser(
        "list",
        help="models available offline, and the architectures (presets) one can train",
        description="Named models are folders in the package's bundled weights and in the model home "
        "($RESTOREVAR_HOME or ~/.cache/restorevar, where `restorevar convert` writes). Any of the names works as "
        "--model NAME.",
        epilog=EXAMPLE,
    )
    p.set_defaults(func=list_command)


def list_command(args) -> int:
    from restorevar.models.presets import list_presets
    from restorevar.models.registry import DEFAULT_MODEL, list_models, load_config

    print("models:")
    for name, folder in list_models().items():
        default = "  (default)" if name == DEFAULT_MODEL else ""
        print(f"  {name:24s} {load_config(folder).model_type:20s} {folder}{default}")
    print("presets (architectures for `restorevar train --preset`):")
    for name in list_presets():
        print(f"  {name}")
    return 0
