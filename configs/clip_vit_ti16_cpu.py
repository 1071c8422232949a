"""CLIP ViT-Ti/16 at 224 px with a 12-layer width-256 text tower (64 tokens, vocabulary 49,408),
embedding width 256, batch 32, fp32: the CPU reference model of bench/train_throughput.py.

    dermjax-train --config configs/clip_vit_ti16_cpu.py --workdir runs/ti16 \
        --config.data.shards=runs/ham/shards

Memory: ~1 GB host RAM at batch 32. Throughput on the 2-core CPU machine: see
bench/results/train_throughput.json (a few images/s; this config is for correctness and
benchmarking, not for a useful CPU training run). The tokenizer must have the configured
vocabulary size or smaller (the model's embedding table is sized by the tokenizer).
"""
import ml_collections

from dermjax.train.defaults import base_config, use_variant


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base_config()
    c.data.batch_size = 32
    c.model.embed_dim = 256
    c.model.vocab_size = 49408  # benchmarks only; training takes the tokenizer's size
    use_variant(c, "image", "Ti/16", size=224, pool="gap")
    c.model.text.update(dict(max_len=64, width=256, depth=12, heads=4, mlp_dim=1024))
    c.optimizer.lr = 5e-4
    c.optimizer.warmup_steps = 500
    c.total_steps = 20000
    c.ckpt_every = 1000
    c.eval_every = 1000
    return c
