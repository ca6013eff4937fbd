"""Each add-on of the bundled `restorevar-extended` model, switched off one at a time, on the held-out benchmark.

    python benchmarks/ablate_addons.py --photos data/photos --out benchmarks/results/addons-restorevar-small

Writes a copy of the bundled model per variant into a temporary folder (same weights, one add-on removed from
the config and its weights dropped) and runs `benchmarks/heldout.py` on each: the shipped model, without the
mixer (the detector's rule), without the blur expert (nor its mixer), and without the input's detail.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from safetensors.torch import load_file, save_file

from restorevar.models.registry import resolve_model

VARIANTS = {
    "shipped": lambda ext: ext,
    "no-mixer": lambda ext: {**ext, "blur_expert": {**ext["blur_expert"], "mixer_width": 0}},
    "no-expert": lambda ext: {**ext, "blur_expert": None},
    "no-detail": lambda ext: {**ext, "input_detail": False},
}


def make_variant(source: Path, target: Path, name: str) -> None:
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    config["extensions"] = VARIANTS[name](config["extensions"])
    (target / "config.json").write_text(json.dumps(config, indent=2))
    expert = config["extensions"]["blur_expert"]
    if expert is None:
        (target / "blur_expert.safetensors").unlink()
    elif not expert["mixer_width"]:
        state = load_file(target / "blur_expert.safetensors")
        save_file({k: v for k, v in state.items() if not k.startswith("mixer.")}, target / "blur_expert.safetensors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a restorevar-extended model (default: the bundled one)")
    parser.add_argument("--photos", required=True)
    parser.add_argument("--out", default="benchmarks/results/addons-restorevar-small", help="OUT-VARIANT.md/.json")
    args = parser.parse_args()
    source = resolve_model(args.model)
    with tempfile.TemporaryDirectory() as folder:
        for name in VARIANTS:
            variant = Path(folder) / name
            make_variant(source, variant, name)
            command = [
                sys.executable,
                str(Path(__file__).with_name("heldout.py")),
                "--model",
                str(variant),
                "--photos",
                args.photos,
                "--out",
                f"{args.out}-{name}",
            ]
            subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
