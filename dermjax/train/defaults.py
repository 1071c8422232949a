"""Every config key the trainer reads, with its default. Experiment configs under configs/
start from `base_config()` and change what they need, so a key is documented once."""
import importlib.util
import os

import ml_collections

from dermjax.core.errors import DermjaxError


# The sizes a tower's `variant` fills in (vit.PRESETS / text.PRESETS).
SIZE_KEYS = {"image": ("width", "depth", "heads", "mlp_dim", "patch"), "text": ("width", "depth", "heads", "mlp_dim")}


def clear_sizes(c: ml_collections.ConfigDict, tower: str) -> None:
    """Zeroes model.<tower>'s explicit sizes (0 = the variant's, or for BERT init's config.json)."""
    c.model[tower].update({k: 0 for k in SIZE_KEYS[tower]})


def use_variant(c: ml_collections.ConfigDict, tower: str, variant: str, **keys) -> None:
    """Sets model.<tower>.variant and clears the explicit sizes the quickstart defaults carry
    (0 = "the variant's"), so `--config.model.<tower>.width=...` still overrides one of them."""
    c.model[tower].update({**{k: 0 for k in SIZE_KEYS[tower]}, "variant": variant, **keys})


def _data_defaults() -> ml_collections.ConfigDict:
    """config.data: the training shards and how they are read."""
    d = ml_collections.ConfigDict()
    d.shards = ""  # a dermjax-prep shards folder
    d.tokenizer = ""  # default: the one named in the shards' manifest
    d.batch_size = 128  # global, across all processes
    d.workers = 0  # grain worker processes per host (0: decode in threads)
    d.note_styles = ()  # empty: sample among all styles
    d.on_bad_example = "error"  # or "skip": an undecodable record is logged and replaced
    # Shard folders, image folders or manifest CSVs that must not share images with the training
    # split; on overlap: "warn", "refuse" or "off" (dermjax-eval checks its benchmarks as well).
    d.contamination = "warn"
    d.contamination_against = ()
    # With model.text.freeze: run the text tower once over all training notes before training
    # and feed its cached outputs to the train step (dermjax/train/text_cache.py).
    d.cache_text_features = True
    d.text_cache_file = ""  # default WORKDIR/text_features.npz; reused when it fits
    # Keep the notes of this fraction of the training patients only (a deterministic hash of the
    # patient id, splits.keeps_notes); the others' images are unpaired (the distill trainer
    # learns from them, the contrastive trainer leaves them out).
    d.paired_fraction = 1.0
    return d


def _model_defaults() -> ml_collections.ConfigDict:
    """config.model: the two towers and the shared embedding."""
    d = ml_collections.ConfigDict()
    d.name = "two_towers"
    d.dtype = "float32"  # "bfloat16" on accelerators (params stay float32)
    d.remat = False  # recompute block activations in the backward pass
    # What a rematerialized block keeps: "full" (its input only) or "dots" (also the projection
    # and MLP matmul outputs; attention scores and elementwise ops are recomputed).
    d.remat_policy = "full"
    # Run the stacked blocks with jax.lax.scan (compile time independent of depth; the
    # accelerator configs' choice) or unrolled; the parameters and checkpoints are the same.
    d.scan = False
    d.embed_dim = 128
    d.init_logit_scale = 2.3  # log(1 / temperature) at the start
    d.init_logit_bias = -10.0  # SigLIP's bias at the start (CLIP ignores it)
    # ViT: explicit sizes, or variant="B/16" (vit.PRESETS); pool "gap" | "cls" | "map"; options
    # for imported weights in vit.OPTIONS. init: a timm / open_clip / big_vision weights file
    # (.safetensors, .pth/.bin, .npz; init_format "auto" detects which); freeze: 0 learning rate
    # and no backward pass through the tower; proj_bias: a bias in the projection (SigLIP's head).
    d.image = dict(variant="", size=64, patch=8, width=128, depth=3, heads=4, mlp_dim=512, pool="gap",
                   init="", init_format="auto", freeze=False, proj_bias=False,
                   # how imported weights compute (vit.OPTIONS; pretrained.vit_options gives
                   # each source's): LayerNorm eps, GELU form, class token with gap pooling,
                   # LayerNorm before the encoder / after pooling, input normalization.
                   # class_token is a typed None: unset follows pool (a class token only
                   # for pool "cls", vit.VisionTransformer); a bool overrides it.
                   ln_eps=1e-6, act="tanh", class_token=ml_collections.config_dict.placeholder(bool),
                   pre_norm=False, norm_pooled=False, pixel_mean=(0.5, 0.5, 0.5), pixel_std=(0.5, 0.5, 0.5))
    # Text: type "transformer" (explicit sizes, or variant="B": text.PRESETS) or "bert" (init: a
    # Hugging Face folder with config.json, weights and tokenizer.json/vocab.txt, whose WordPiece
    # tokenizer then replaces the shards' one; pool "cls" | "pooler" | "mean").
    # pool: "" is the tower's own (transformer: mean over real tokens; bert: "cls"). BERT keys
    # left at 0 / "" come from init's config.json (bert.ARCH_KEYS).
    d.text = dict(type="transformer", variant="", max_len=48, width=128, depth=2, heads=4, mlp_dim=512,
                  init="", pool="", freeze=False, proj_bias=False,
                  vocab_size=0, max_positions=0, type_vocab_size=0, ln_eps=0.0, act="", pad_id=0)
    # Benchmarks that build a model without a tokenizer size its token table from this (0:
    # training always takes the tokenizer's size).
    d.vocab_size = 0
    return d


def _distill_defaults() -> ml_collections.ConfigDict:
    """config.distill: the teacher and losses of trainer "distill"."""
    d = ml_collections.ConfigDict()
    d.teacher = ""  # a dermjax-train workdir, or WORKDIR/checkpoints/STEP
    d.teacher_embed_dim = 0  # filled in from the teacher (sizes the projection head)
    d.unpaired_ratio = 0.5  # fraction of each batch that is unpaired images
    d.unpaired_shards = ()  # more shard folders read as images only (notes never read)
    d.embed_loss = "cosine"  # or "l2"
    d.temperature = 0.05  # of both softmaxes over the text bank
    d.bank_notes = 64  # paired training notes in the text bank, beside the class prompts
    d.prompts = ""  # prompt file for the bank's class prompts (default: the eval prompts)
    # Loss weights; "pseudo" (> 0) turns on the teacher's nearest bank note as a caption.
    d.weights = dict(contrastive=1.0, embed=1.0, similarity=1.0, classes=0.0, pseudo=0.0)
    return d


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.trainer = "contrastive"
    c.loss = "clip"  # or "siglip"
    c.label_aware = False  # same-class pairs count as positives too

    c.data = _data_defaults()
    c.model = _model_defaults()

    # groups: ((regex over parameter paths, lr multiplier), ...); multiplier 0 freezes.
    c.optimizer = dict(lr=1e-3, warmup_steps=50, end_lr_fraction=0.02, weight_decay=0.05,
                       grad_clip=1.0, b1=0.9, b2=0.98, groups=())
    c.total_steps = 400
    c.log_every = 10
    c.ckpt_every = 200
    c.keep_checkpoints = 2
    c.keep_every = 0  # also keep every K-th step forever (0: off)
    c.eval_every = 100  # zero-shot + retrieval on the validation split (0: off)
    # Multi-process runs agree on a stop (SIGTERM, preemption) every this many steps: a host
    # exchange that would otherwise stall every step.
    c.stop_check_every = 10

    c.mesh = dict(data=-1, fsdp=1, tensor=1)  # -1: all remaining devices

    # Multi-process runs (dermjax/train/watchdog.py), seconds: connecting to the coordinator,
    # JAX's own dead-peer abort, the exit barrier; a peer silent for lost_after is lost; no step
    # finished in step_timeout is a hang. Either way every process stops naming the cause.
    c.watchdog = dict(init_timeout=300, heartbeat_timeout=100, shutdown_timeout=300, lost_after=30.0,
                      step_timeout=1800.0, interval=0.0)

    # trainer = "distill" (dermjax/train/distill.py): a frozen teacher guides the student on
    # unpaired images; batch_size counts paired + unpaired rows.
    c.distill = _distill_defaults()
    return c


LOSSES = ("clip", "siglip")
TRAINERS = ("contrastive", "distill")
REMAT_POLICIES = ("full", "dots")


def validate(c: ml_collections.ConfigDict, num_devices: int) -> None:
    """Checks a config before a run writes anything: sizes positive, names known, the mesh
    buildable from `num_devices`, the files it names present. Raises DermjaxError (one line,
    exit status 2 from the command lines) naming the key."""
    # core.sharding imports JAX; configs import this module and load without it.
    from dermjax.core.sharding import mesh_shape

    def positive(key: str, value, zero_ok: bool = False):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or (value == 0 and not zero_ok):
            raise DermjaxError(f"config.{key} must be a {'non-negative' if zero_ok else 'positive'} number, "
                               f"got {value!r}")

    for key in ("data.batch_size", "total_steps", "log_every", "ckpt_every", "keep_checkpoints", "model.embed_dim",
                "model.image.size", "model.text.max_len", "optimizer.lr"):
        node = c
        for part in key.split("."):
            node = node[part]
        positive(key, node)
    for key in ("data.workers", "eval_every", "keep_every", "optimizer.warmup_steps", "optimizer.weight_decay",
                "stop_check_every"):
        node = c
        for part in key.split("."):
            node = node.get(part, 0) if hasattr(node, "get") else node[part]
        positive(key, node, zero_ok=True)
    if c.loss not in LOSSES:
        raise DermjaxError(f"config.loss must be one of {', '.join(LOSSES)}, got {c.loss!r}")
    if c.get("trainer", "contrastive") not in TRAINERS:
        raise DermjaxError(f"config.trainer must be one of {', '.join(TRAINERS)}, got {c.trainer!r}")
    if c.model.get("remat") and c.model.get("remat_policy", "full") not in REMAT_POLICIES:
        raise DermjaxError(f"config.model.remat_policy must be one of {', '.join(REMAT_POLICIES)}, "
                           f"got {c.model.remat_policy!r}")
    text_type = c.model.text.get("type") or "transformer"
    if text_type == "transformer" and (c.model.text.get("pool") or "mean") != "mean":
        raise DermjaxError(f"config.model.text.pool {c.model.text.pool!r}: dermjax's own text tower pools by the "
                           f"mean over real tokens (pool 'cls' and 'pooler' are for type 'bert')")
    if not 0.0 < float(c.data.get("paired_fraction", 1.0)) <= 1.0:
        raise DermjaxError(f"config.data.paired_fraction must be in (0, 1], got {c.data.paired_fraction!r}")
    try:
        mesh_shape(dict(c.mesh), num_devices)
    except ValueError as e:
        raise DermjaxError(f"config.mesh: {e}") from None
    if not c.data.get("shards"):
        raise DermjaxError("config.data.shards: give the folder written by `dermjax-prep shards`")
    if "://" not in c.data.shards and not os.path.isfile(os.path.join(c.data.shards, "manifest.json")):
        raise DermjaxError(f"config.data.shards: {c.data.shards} holds no manifest.json; write it with `dermjax-prep shards`")
    for key in ("data.tokenizer", "model.image.init", "model.text.init", "data.text_cache_file"):
        section, name = key.rsplit(".", 1)
        value = c
        for part in section.split("."):
            value = value[part]
        value = value.get(name) or ""
        if value and "://" not in value and key != "data.text_cache_file" and not os.path.exists(value):
            raise DermjaxError(f"config.{key}: {value} does not exist")
    if c.get("trainer") == "distill":
        teacher = c.distill.get("teacher") or ""
        if not teacher:
            raise DermjaxError("config.distill.teacher: give the teacher's dermjax-train workdir (or WORKDIR/checkpoints/STEP)")
        if "://" not in teacher and not os.path.exists(teacher):
            raise DermjaxError(f"config.distill.teacher: {teacher} does not exist")


def load_config(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """`get_config(arg)` of the config file at `path`, loaded by file name (as --config does),
    so one config can build on another from any working directory."""
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)
