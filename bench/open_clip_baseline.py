"""The PyTorch side of bench/train_throughput.py: open_clip trains the same CLIP ViT-Ti/16 +
12x256 text tower at batch 32 in fp32 on CPU. Run it with a venv that has torch and open_clip:

    python -m venv /tmp/oc && /tmp/oc/bin/pip install torch==2.13.0 numpy pillow
    /tmp/oc/bin/pip install --no-deps open_clip_torch timm torchvision
    /tmp/oc/bin/pip install ftfy regex huggingface_hub safetensors
    python bench/train_throughput.py --open-clip /tmp/oc/bin/python

With --serve it warms up, then times each "run N" request read from stdin (the protocol of
bench/train_throughput.py), so the parent can measure both sides in turns.

PyPI's torchvision is a CUDA build whose import fails next to CPU torch ("operator
torchvision::nms does not exist"); declaring those two operator schemas first lets it import.
Without --serve it prints one JSON line: images_per_sec.
"""
import argparse
import json
import os
import sys
import time

import torch

# torchvision (imported by open_clip) registers kernels for ops its CUDA build declares in C++.
_lib = torch.library.Library("torchvision", "DEF")
_lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")

import open_clip  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--serve", action="store_true")
    a = ap.parse_args()
    torch.manual_seed(0)
    model = open_clip.CLIP(
        embed_dim=256,
        vision_cfg=open_clip.CLIPVisionCfg(layers=12, width=192, head_width=64, patch_size=16, image_size=224),
        text_cfg=open_clip.CLIPTextCfg(context_length=64, vocab_size=49408, width=256, heads=4, layers=12),
    )
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    loss_fn = open_clip.ClipLoss()
    images = torch.randn(a.batch, 3, 224, 224)
    texts = torch.randint(3, 49408, (a.batch, 64))

    def step():
        img, txt, scale = model(images, texts)[:3]
        loss = loss_fn(img, txt, scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def run(n):
        t = time.perf_counter()
        for _ in range(n):
            step()
        return (time.perf_counter() - t) / n

    step()
    step()
    info = {"threads": torch.get_num_threads(), "torch": torch.__version__, "open_clip": open_clip.__version__,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6}
    if a.serve:
        # the protocol's one implementation; train_throughput imports nothing beyond the stdlib
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from train_throughput import serve

        serve(info, run)
        return
    dt = run(a.steps)
    print(json.dumps({"images_per_sec": a.batch / dt, "step_s": dt, **info}))


if __name__ == "__main__":
    main()
