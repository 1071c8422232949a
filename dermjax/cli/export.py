"""dermjax-export: a trained model as .safetensors + config.json + tokenizer (dermjax/models/export.py).

    dermjax-export --workdir DIR [--step N] --out OUTDIR [--format dermjax|timm|open_clip|hf]

--format timm writes the image tower and its projection as a timm VisionTransformer state dict
(dermjax/models/export_timm.py): `VisionTransformer(**config["timm_kwargs"])` loads it with
strict=True, and config.json carries the preprocessing (size, mean, std) and the load recipe.
--format hf writes a BERT text tower as a Hugging Face BertModel folder, its projection in
text_projection.safetensors (dermjax/models/export_hf.py). dermjax's own text transformer and a
--format open_clip writes the image tower as open_clip's visual tower where open_clip computes it
exactly (a class token; cls or mean pooling; not MAP); the text tower has no open_clip equivalent.
"""
from __future__ import annotations

import argparse
import os

from dermjax.cli._common import add_verbosity, one_line_errors, set_verbosity


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dermjax-export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True, help="a dermjax-train workdir")
    p.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    p.add_argument("--out", required=True, help="folder for model.safetensors, config.json (and the tokenizer)")
    p.add_argument("--format", choices=("dermjax", "timm", "open_clip", "hf"), default="dermjax",
                   help="dermjax: both towers, loadable with dermjax.models.export.load; timm: the image tower "
                        "and its projection as a timm VisionTransformer (load_state_dict strict=True); open_clip: the "
                        "same as open_clip's visual tower, where open_clip can compute it; hf: a BERT text "
                        "tower as a Hugging Face BertModel folder with its projection")
    add_verbosity(p)
    return p


@one_line_errors
def main(argv=None):
    args = build_parser().parse_args(argv)
    set_verbosity(args.verbosity)
    # Imported after parsing: JAX and Flax take seconds to start, --help and usage errors none.
    from flax import nnx
    from dermjax.core import tokenizer as tokenizer_lib
    from dermjax.eval.evaluate import Embedder  # (JAX)
    from dermjax.models import export  # (JAX)

    embedder = Embedder.from_workdir(args.workdir, args.step)
    model = nnx.merge(embedder.model_graph, embedder.model_state)
    tok_file = next(os.path.join(args.workdir, n) for n in tokenizer_lib.WORKDIR_NAMES
                    if os.path.isfile(os.path.join(args.workdir, n)))
    if args.format == "hf":
        export.save_hf(model, embedder.cfg.model, tok_file, args.out, embedder.step)
        print(f"exported step {embedder.step} of {args.workdir} -> {args.out} (Hugging Face BertModel: "
              f"model.safetensors, config.json, text_projection.safetensors, tokenizer)")
        return
    if args.format == "open_clip":
        export.save_open_clip(model, embedder.cfg.model, args.out, embedder.step)
        print(f"exported step {embedder.step} of {args.workdir} -> {args.out} (open_clip visual tower: "
              f"open_clip_visual.safetensors, config.json with the model config and load recipe)")
        return
    if args.format == "timm":
        export.save_timm(model, embedder.cfg.model, args.out, embedder.step)
        print(f"exported step {embedder.step} of {args.workdir} -> {args.out} (timm VisionTransformer: "
              f"model.safetensors, config.json with the kwargs, preprocessing and load recipe)")
        return
    export.save(model, embedder.cfg.model, embedder.tokenizer.vocab_size, tok_file, args.out, embedder.step)
    print(f"exported step {embedder.step} of {args.workdir} -> {args.out} "
          f"(model.safetensors, config.json, {tokenizer_lib.workdir_name(tok_file)})")


if __name__ == "__main__":
    main()
