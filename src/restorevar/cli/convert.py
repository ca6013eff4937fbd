"""`restorevar convert`: the paper's official checkpoints to a model folder of ours."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

EXAMPLE = "example: restorevar convert ~/Downloads/restorevar_release ~/.cache/restorevar/restorevar-paper-512"


def add_parser(commands) -> None:
    p = commands.add_parser(
        "convert",
        help="convert the official RestoreVAR checkpoints to our format",
        description="Read the official release (restorevar.pth + vae_restorevar.ckpt, or vae_ch160v4096z32.pth) "
        "with torch.load(weights_only=True), infer the architecture from tensor shapes and buffers, and write "
        "config.json + safetensors.",
        epilog=EXAMPLE,
    )
    p.add_argument("official_dir", type=Path, help="folder with restorevar.pth and the VQVAE file")
    p.add_argument("out_dir", type=Path, help="where to write our model folder")
    p.add_argument("--vae", type=Path, help="explicit VQVAE file (default: looked up in OFFICIAL_DIR)")
    p.add_argument("--var", type=Path, help="explicit restorevar.pth (default: looked up in OFFICIAL_DIR)")
    p.add_argument("--preset", help="use this preset's architecture instead of the inferred one")
    p.add_argument("--refiner-heads", type=int, help="refiner attention heads (default: width/64, as in the paper)")
    p.set_defaults(func=convert_command)


def convert_command(args) -> int:
    from restorevar.models.checkpoint import load_strict
    from restorevar.models.presets import get_preset
    from restorevar.models.restorevar.convert import convert_official, find_official_files
    from restorevar.models.restorevar.model import RestoreVAR

    vae_file, var_file = find_official_files(args.official_dir, args.vae, args.var)
    preset = get_preset(args.preset) if args.preset else None
    converted = convert_official(vae_file, var_file, preset=preset, refiner_heads=args.refiner_heads)
    model = RestoreVAR(converted.config)
    for name, state in converted.states.items():
        load_strict(getattr(model, name), state, var_file if name != "vqvae" else vae_file)
    model.save_pretrained(args.out_dir)
    for note in converted.notes:
        log.info(note)
    print(f"wrote {args.out_dir} ({sum(p.numel() for p in model.parameters()):,} parameters)")
    return 0
