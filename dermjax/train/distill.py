"""Teacher-student distillation trainer: a student two-tower model learns from paired examples
(image + note: the contrastive loss) and from unpaired images through a frozen teacher.

On the unpaired images of each batch the student is pulled toward the teacher by
- embedding distillation: cosine or L2 between the student's image embedding (through a learned
  projection `distill_proj` when the widths differ) and the teacher's;
- similarity distillation: KL(teacher || student) between their softened distributions over a
  text bank (class prompts for every training class, prompt-ensembled as in zero-shot eval, plus
  a fixed sample of the paired training notes). The teacher's bank embeddings are computed once;
  the student's come from its own text tower every step, so its text side learns too;
- class distillation: the same KL over the class entries of the bank only, i.e. the teacher's
  zero-shot class posterior as a soft label;
- optionally, pseudo-notes: the teacher's nearest bank note for each unpaired image, used as its
  caption in a contrastive loss (images that share a pseudo-note are positives of each other).

The teacher (`distill.teacher`: a dermjax-train workdir or WORKDIR/checkpoints/STEP) is restored
onto the trainer's mesh, passed to the step as a separate argument that is neither donated nor
updated, and never saved: checkpoints hold the student and its optimizer only, so resume,
restore onto another mesh and dermjax-eval work exactly as for the contrastive trainer.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from dermjax.data import pipeline, shards
from dermjax.core.errors import DermjaxError
from dermjax.models.transformer import dense
from dermjax.models.two_towers import l2_normalize
from dermjax.core import sharding
from dermjax.core import checkpoint
from dermjax.eval import benchmarks
from dermjax.eval.evaluate import Embedder
from dermjax.models.restore import restore_model
from dermjax.train import contrastive, loop, step

EMBED_LOSSES = ("cosine", "l2")
LOSS_TERMS = ("contrastive", "embed", "similarity", "classes", "pseudo")


def add_heads(model: nnx.Module, cfg: ml_collections.ConfigDict, rngs: nnx.Rngs) -> None:
    """The student's projection onto the teacher's embedding width, where the widths differ.
    Added after the towers (Task.add_heads), so they initialize as in a contrastive model."""
    width = int(cfg.distill.get("teacher_embed_dim") or 0)
    if width and width != cfg.model.embed_dim:
        model.distill_proj = dense(cfg.model.embed_dim, width, (None, None), rngs, jnp.float32, use_bias=False)


def embed_loss(kind: str, student, teacher):
    """Per-example distance between L2-normalized embeddings, averaged."""
    student = l2_normalize(student)
    if kind == "cosine":
        return (1.0 - (student * teacher).sum(-1)).mean()
    if kind == "l2":
        return ((student - teacher) ** 2).sum(-1).mean()
    raise DermjaxError(f"distill.embed_loss must be one of {', '.join(EMBED_LOSSES)}, got {kind!r}")


def similarity_loss(student_logits, teacher_logits, temperature: float):
    """KL(teacher || student) between softmaxes of the logits / temperature, averaged over rows."""
    t = jax.nn.log_softmax(teacher_logits / temperature, axis=-1)
    s = jax.nn.log_softmax(student_logits / temperature, axis=-1)
    return (jnp.exp(t) * (t - s)).sum(-1).mean()


class TextBank:
    """Texts the similarity distillation compares images with: `entries` rows, each the mean of
    some texts' embeddings (a class: its prompt ensemble; a note: itself)."""

    def __init__(self, class_texts: dict[str, list[str]], notes: list[str]):
        self.classes = list(class_texts)
        self.texts = [t for ts in class_texts.values() for t in ts] + list(notes)
        self.note_offset = len(self.texts) - len(notes)  # notes are the last texts and entries
        n_entries = len(class_texts) + len(notes)
        avg = np.zeros((n_entries, len(self.texts)), np.float32)
        col = 0
        for row, ts in enumerate(class_texts.values()):
            avg[row, col:col + len(ts)] = 1.0 / len(ts)
            col += len(ts)
        avg[len(class_texts):, self.note_offset:] = np.eye(len(notes), dtype=np.float32)
        self.avg = avg

    def embed(self, text_embeddings):
        return l2_normalize(self.avg @ text_embeddings)


def build_bank(cfg: ml_collections.ConfigDict, paired: list[int], reader) -> TextBank:
    """Class prompts for every class of the training split + `distill.bank_notes` notes drawn
    (deterministically from the seed) from the paired training records: never a withheld note."""
    manifest = shards.load_manifest(cfg.data.shards)
    counts = manifest["splits"]["train"]["classes"]
    prompts = benchmarks.load_prompts(cfg.distill.get("prompts") or None)
    classes = [c for c in manifest["classes"] if counts.get(c)]
    class_texts = {c: [t.format(n) for t in prompts["templates"] for n in prompts["classnames"].get(c, [c])]
                   for c in classes}
    rng = np.random.default_rng(cfg.seed)
    picks = rng.choice(len(paired), size=min(int(cfg.distill.bank_notes), len(paired)), replace=False)
    notes = []
    for i in sorted(picks.tolist()):
        ex_notes = reader.example(paired[i])["notes"]
        if ex_notes:
            notes.append(ex_notes[int(rng.integers(len(ex_notes)))]["text"])
    return TextBank(class_texts, notes)


def make_train_step(graphdef, cfg: ml_collections.ConfigDict, state_shardings, batch_sharding,
                    teacher_graph, teacher_shardings, teacher_image_size: int, n_classes: int, note_offset: int):
    """step(state, teacher state, bank, batch) -> (state, metrics). Donates the student state only.

    `bank`: {"tokens": [T, L] student tokens of the bank texts, "avg": [E, T] entry averaging,
    "teacher": [E, D_teacher] the teacher's bank embeddings}: `n_classes` class entries, then
    the notes (texts from `note_offset` on).
    """
    d = cfg.distill
    weights = {k: float(d.weights.get(k, 0.0)) for k in LOSS_TERMS}
    mesh = batch_sharding.mesh
    contrastive_loss = contrastive.make_loss_fn(cfg.loss, mesh, cfg.get("label_aware", False))
    pseudo_loss = contrastive.make_loss_fn(cfg.loss, mesh, label_aware=True)
    tau = float(d.temperature)

    def train_step(state, teacher, bank, batch):
        unpaired = batch["unpaired_image"]
        t_in = unpaired
        if teacher_image_size != unpaired.shape[1]:
            b, _, _, c = unpaired.shape
            t_in = jax.image.resize(unpaired.astype(jnp.float32), (b, teacher_image_size, teacher_image_size, c),
                                    "bilinear")
        t_img = jax.lax.stop_gradient(nnx.merge(teacher_graph, teacher).embed_images(t_in))
        t_logits = t_img @ bank["teacher"].T
        # The teacher's nearest bank note: a pseudo-caption for each unpaired image.
        nearest = jnp.argmax(t_logits[:, n_classes:], axis=1) if weights["pseudo"] else None

        def loss_fn(model):
            scale, bias = model.logit_scale[...], model.logit_bias[...]
            img, txt = model(batch["image"], batch["tokens"])
            terms = {"contrastive": contrastive_loss(img, txt, scale, bias, batch["label"])}
            s_img = model.embed_images(unpaired)
            s_bank = l2_normalize(bank["avg"] @ model.embed_texts(bank["tokens"]))
            proj = getattr(model, "distill_proj", None)
            terms["embed"] = embed_loss(d.embed_loss, s_img if proj is None else proj(s_img), t_img)
            s_logits = s_img @ s_bank.T
            terms["similarity"] = similarity_loss(s_logits, t_logits, tau)
            # The teacher's zero-shot class posterior alone: the prompts are texts the notes never
            # contain, so without this anchor their place drifts as the text tower fits the notes.
            terms["classes"] = similarity_loss(s_logits[:, :n_classes], t_logits[:, :n_classes], tau)
            if weights["pseudo"]:
                p_txt = model.embed_texts(bank["tokens"][note_offset + nearest])
                terms["pseudo"] = pseudo_loss(s_img, p_txt, scale, bias, nearest.astype(jnp.int32))
            total = sum(weights[k] * v for k, v in terms.items() if weights[k])
            return total, terms

        return step.apply_loss(graphdef, state, loss_fn)

    return step.jit_step(train_step, mesh, state_shardings, teacher_shardings, sharding.replicated(mesh),
                         batch_sharding)


class Distill(loop.Task):
    add_heads = staticmethod(add_heads)

    def __init__(self, cfg, tokenizer, mesh):
        super().__init__(cfg, tokenizer, mesh)
        d = cfg.distill
        if not d.get("teacher"):
            raise DermjaxError("distill.teacher: give the teacher's dermjax-train workdir (or WORKDIR/checkpoints/STEP)")
        if d.embed_loss not in EMBED_LOSSES:
            raise DermjaxError(f"distill.embed_loss must be one of {', '.join(EMBED_LOSSES)}, got {d.embed_loss!r}")
        if unknown := sorted(set(d.weights) - set(LOSS_TERMS)):
            raise DermjaxError(f"distill.weights: unknown term(s) {', '.join(unknown)}; known: {', '.join(LOSS_TERMS)}")
        n_proc, dp = jax.process_count(), sharding.data_parallel_size(mesh)
        self.unpaired_batch = int(round(cfg.data.batch_size * float(d.unpaired_ratio)))
        self.paired_batch = cfg.data.batch_size - self.unpaired_batch
        for what, n in (("paired", self.paired_batch), ("unpaired", self.unpaired_batch)):
            if n <= 0 or n % (n_proc * dp):
                raise DermjaxError(f"distill.unpaired_ratio {d.unpaired_ratio} of batch_size {cfg.data.batch_size}: "
                                   f"{n} {what} rows per batch, not a positive multiple of the data-parallel "
                                   f"size {dp} x {n_proc} processes")

        # --- the frozen teacher, on this mesh --------------------------------------------------
        teacher_workdir, teacher_step = checkpoint.resolve(d.teacher)
        teacher = restore_model(teacher_workdir, mesh, teacher_step)
        self.teacher = Embedder.from_restored(teacher, mesh)
        self.teacher_step, self.teacher_cfg = teacher.step, teacher.cfg
        tcfg = teacher.cfg
        d.teacher_embed_dim = int(tcfg.model.embed_dim)  # sizes the student's projection head

        # --- the text bank: the teacher's embeddings now, the student's tokens for every step --
        paired, _ = pipeline.paired_indices(self.reader, float(cfg.data.get("paired_fraction", 1.0)))
        self.bank = build_bank(cfg, paired, self.reader)
        self.bank_arrays = jax.device_put(
            {"tokens": tokenizer.encode(self.bank.texts), "avg": self.bank.avg,
             "teacher": np.asarray(self.bank.embed(self.teacher.texts(self.bank.texts)))},
            sharding.replicated(mesh))

    def input_iterator(self, start_batch: int = 0):
        n_proc = jax.process_count()
        return pipeline.make_mixed_iterator(
            self.cfg.data.shards, batch_size=self.paired_batch // n_proc,
            unpaired_batch_size=self.unpaired_batch // n_proc,
            unpaired_shards=tuple(self.cfg.distill.get("unpaired_shards", ())), **self.stream_options(start_batch))

    def make_train_step(self, graphdef, state_shardings, batch_sharding):
        teacher_state = self.teacher.model_state
        teacher_shardings = jax.tree.map(lambda x: x.sharding, teacher_state)
        step = make_train_step(graphdef, self.cfg, state_shardings, batch_sharding, self.teacher.model_graph,
                               teacher_shardings, int(self.teacher_cfg.model.image.size), len(self.bank.classes),
                               self.bank.note_offset)
        bank = self.bank_arrays
        return lambda state, batch: step(state, teacher_state, bank, batch)

    def describe(self) -> str:
        d = self.cfg.distill
        weights = ", ".join(f"{k} {float(d.weights.get(k, 0.0)):g}" for k in LOSS_TERMS)
        n_teacher = sum(int(x.size) for x in jax.tree.leaves(self.teacher.model_state))
        return (f"distilling from {d.teacher} (step {self.teacher_step}, {n_teacher / 1e6:.2f}M params, frozen); "
                f"batch {self.paired_batch} paired + {self.unpaired_batch} unpaired; bank "
                f"{len(self.bank.classes)} classes + {self.bank.avg.shape[0] - len(self.bank.classes)} notes; "
                f"loss {self.cfg.loss}, weights {weights}, embed {d.embed_loss}, temperature {float(d.temperature):g}")


def train(cfg: ml_collections.ConfigDict, workdir: str) -> dict:
    return loop.run(cfg, workdir, Distill)
