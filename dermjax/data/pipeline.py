"""grain input pipeline: ArrayRecord shards -> global shuffle -> read, decode, augment, one note
per example per epoch, tokenize (lazily, for this process's rows of each global batch only) ->
batch -> multiprocess prefetch.

Every random choice comes from grain's per-element generators (seed + element index + epoch),
so the stream is identical for any number of workers and resumes exactly from a saved state.
The dataset itself holds record indices; reading happens in the transform, so a record that
cannot be read or decoded is reported by shard file and index (or replaced, see Preprocess).
"""
from __future__ import annotations

import dataclasses
import json

import grain
import numpy as np
from absl import logging

from dermjax.data import augment
from dermjax.data.shards import ShardReader, expected_counts, shard_paths
from dermjax.data.splits import keeps_notes
from dermjax.data.tokenizer import Tokenizer
from dermjax.errors import DermjaxError

ON_BAD_EXAMPLE = ("error", "skip")
# A run of this many unreadable records in a row means a broken shard, not a stray bad image.
MAX_CONSECUTIVE_BAD = 32


@dataclasses.dataclass
class Preprocess:
    """read + decode + (augment) + pick a note + tokenize. A dataclass so grain can pickle it.

    on_bad: "error" raises a DermjaxError naming the shard and record; "skip" logs it and uses
    the next readable record instead. The substitute depends only on the index, so the stream
    stays the same for any number of workers and across resumes, and batches keep their size.
    """

    tokenizer: Tokenizer | None
    image_size: int
    train: bool
    note_styles: tuple[str, ...] = ()  # empty: any style
    reader: ShardReader | None = None
    on_bad: str = "error"
    with_text: bool = True  # False: the image alone (an unpaired image: no note, no label)

    def __post_init__(self):
        if self.on_bad not in ON_BAD_EXAMPLE:
            raise DermjaxError(f"on_bad_example must be one of {', '.join(ON_BAD_EXAMPLE)}, got {self.on_bad!r}")
        self.skipped = 0  # per process: grain workers each count their own

    def decode(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        ex = self.reader.example(index)
        try:
            img = augment.open_image(ex["image"])
            if self.train:
                image = augment.train_augment(img, self.image_size, rng)
            else:
                image = augment.center_square(img, self.image_size)
        except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... on bad bytes
            path, j = self.reader.locate(index)
            raise DermjaxError(f"{path}: record {j} (image_id {ex.get('image_id')!r}): image does not "
                               f"decode ({str(e).strip() or type(e).__name__})") from None
        return image, ex

    def __call__(self, index, rng: np.random.Generator) -> dict:
        index = int(index)
        for attempt in range(MAX_CONSECUTIVE_BAD):
            try:
                image, ex = self.decode((index + attempt) % len(self.reader), rng)
                break
            except DermjaxError as e:
                if self.on_bad == "error":
                    raise
                self.skipped += 1
                logging.warning("skipped bad example (%d so far in this process): %s", self.skipped, e)
        else:
            raise DermjaxError(f"{MAX_CONSECUTIVE_BAD} consecutive records from index {index} do not "
                               f"decode; last: {self.reader.locate((index + MAX_CONSECUTIVE_BAD - 1) % len(self.reader))}")
        if not self.with_text:
            return {"image": image}
        notes = [n for n in ex["notes"] if not self.note_styles or n["style"] in self.note_styles]
        if notes:
            text = notes[int(rng.integers(len(notes)))]["text"] if self.train else notes[0]["text"]
        else:
            text = ""
        return {"image": image, "tokens": self.tokenizer.encode(text), "label": np.int32(ex["label"])}


class ProcessRows(grain.MapDataset):
    """This process's rows of every global batch of one shared, globally shuffled stream.

    Process p reads rows [p*b, (p+1)*b) of global batch k as its batch k, which is exactly the
    part of the global array that `make_array_from_process_local_data` places on p's devices.
    So N processes train on the same global batches as one process would, and each decodes only
    its own rows.
    """

    def __init__(self, parent: grain.MapDataset, process_index: int, process_count: int,
                 local_batch: int):
        super().__init__(parent)
        self._p, self._n, self._b = process_index, process_count, local_batch

    def __len__(self) -> int:
        return len(self._parent) // self._n

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        batch, row = divmod(index, self._b)
        return self._parent[(batch * self._n + self._p) * self._b + row]

    def __str__(self) -> str:
        return f"ProcessRows(process={self._p}/{self._n}, local_batch={self._b})"


class Zip(grain.MapDataset):
    """Element k of each parent, merged into one dict (keys of parent i get prefixes[i])."""

    def __init__(self, parents: list[grain.MapDataset], prefixes: list[str]):
        super().__init__(parents)
        self._prefixes = prefixes

    def __len__(self) -> int:
        return min(len(p) for p in self.parents)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        return {pre + k: v for pre, p in zip(self._prefixes, self.parents) for k, v in p[index].items()}

    def __str__(self) -> str:
        return f"Zip({', '.join(self._prefixes)})"


def paired_indices(reader: ShardReader, fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """(records that keep their notes, records whose notes are withheld): a deterministic
    `fraction` of the patients keeps them (splits.keeps_notes)."""
    if fraction >= 1.0:
        return list(range(len(reader))), []
    if not 0.0 < fraction < 1.0:
        raise DermjaxError(f"paired_fraction must be in (0, 1], got {fraction}")
    keep, withheld = [], []
    for i in range(len(reader)):
        ex = reader.example(i)
        record = json.loads(ex["record"])
        (keep if keeps_notes(record, fraction, seed) else withheld).append(i)
    if not keep:
        raise DermjaxError(f"paired_fraction {fraction}: no record of {reader.paths[0]}... keeps its notes")
    return keep, withheld


def _batches(reader: ShardReader, indices: list[int] | None, preprocess: Preprocess, *, batch_size: int,
             seed: int, process_index: int, process_count: int) -> grain.MapDataset:
    """The endless, globally shuffled batch stream of `indices` (all records if None), this
    process's rows of each global batch."""
    ds = grain.MapDataset.range(len(reader)) if indices is None else grain.MapDataset.source(indices)
    ds = ds.shuffle(seed=seed).random_map(preprocess, seed=seed + 1)
    ds = ds.repeat(None)
    if process_count > 1:
        ds = ProcessRows(ds, process_index, process_count, batch_size)
    return ds.batch(batch_size, drop_remainder=True)


def _iterate(ds: grain.MapDataset, start_batch: int, workers: int) -> grain.DatasetIterator:
    if start_batch:
        # Position by construction: batch k is the same for any worker or process count, so a
        # run can resume where no saved iterator state fits (e.g. another number of hosts).
        ds = ds[start_batch:]
    # One prefetch thread: the per-example work holds the GIL often enough that a second thread
    # only adds contention (bench/input_pipeline.py: 1.46 cores busy for no more examples/s).
    # More throughput comes from worker processes.
    it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=4))
    if workers > 0:
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return iter(it_ds)


def training_reader(shard_dir: str, split: str = "train") -> ShardReader:
    return _reader([shard_dir], split)


def _reader(shard_dirs: list[str], split: str) -> ShardReader:
    paths, counts = [], []
    for d in shard_dirs:
        paths += shard_paths(d, split)
        counts += expected_counts(d, split)
    return ShardReader(paths, counts)


def make_train_iterator(shard_dir: str, *, tokenizer: Tokenizer, image_size: int,
                        batch_size: int, seed: int, process_index: int = 0, process_count: int = 1,
                        workers: int = 0, note_styles: tuple[str, ...] = (),
                        split: str = "train", on_bad_example: str = "error",
                        start_batch: int = 0, paired_fraction: float = 1.0) -> grain.DatasetIterator:
    """Endless iterator of per-process batches (dicts of numpy arrays).

    `batch_size` is the per-process batch; the trainer assembles the global batch across hosts.
    Shards are opened (and checked against the manifest's counts) here, so a truncated shard
    fails before training starts. `paired_fraction` < 1 trains on the patients that keep their
    notes only (`paired_indices`).
    """
    reader = training_reader(shard_dir, split)
    indices = None if paired_fraction >= 1.0 else paired_indices(reader, paired_fraction, seed=0)[0]
    ds = _batches(reader, indices, Preprocess(tokenizer, image_size, True, note_styles, reader, on_bad_example),
                  batch_size=batch_size, seed=seed, process_index=process_index, process_count=process_count)
    return _iterate(ds, start_batch, workers)


def make_mixed_iterator(shard_dir: str, *, tokenizer: Tokenizer, image_size: int, batch_size: int,
                        unpaired_batch_size: int, seed: int, paired_fraction: float = 1.0,
                        unpaired_shards: tuple[str, ...] = (), process_index: int = 0,
                        process_count: int = 1, workers: int = 0, note_styles: tuple[str, ...] = (),
                        split: str = "train", on_bad_example: str = "error",
                        start_batch: int = 0) -> grain.DatasetIterator:
    """Per-process batches of paired examples ("image", "tokens", "label": `batch_size` rows)
    plus unpaired images ("unpaired_image": `unpaired_batch_size` rows).

    Unpaired images are the training records of `shard_dir` whose notes are withheld
    (`paired_fraction` < 1) and every training record of `unpaired_shards` (folders whose notes
    and labels are never read). Each stream is shuffled on its own; one iterator carries both,
    so one saved state resumes both exactly.
    """
    reader = training_reader(shard_dir, split)
    paired, withheld = paired_indices(reader, paired_fraction, seed=0)
    common = dict(seed=seed, process_index=process_index, process_count=process_count)
    streams = [_batches(reader, None if not withheld else paired,
                        Preprocess(tokenizer, image_size, True, note_styles, reader, on_bad_example),
                        batch_size=batch_size, **common)]
    if not withheld and not unpaired_shards:
        raise DermjaxError(f"{shard_dir}: no unpaired images: set paired_fraction < 1 or unpaired_shards")
    # One reader over both sources of unpaired images: withheld records come first.
    u_reader = _reader([shard_dir] * bool(withheld) + list(unpaired_shards), split)
    u_indices = withheld + list(range(len(reader) * bool(withheld), len(u_reader)))
    common["seed"] = seed + 2  # the unpaired stream's own shuffle and augmentation
    streams.append(_batches(u_reader, u_indices,
                            Preprocess(None, image_size, True, (), u_reader, on_bad_example, with_text=False),
                            batch_size=unpaired_batch_size, **common))
    return _iterate(Zip(streams, ["", "unpaired_"]), start_batch, workers)
