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

import grain
import numpy as np
from absl import logging

from dermjax.data import augment
from dermjax.data.shards import ShardReader, expected_counts, shard_paths
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

    tokenizer: Tokenizer
    image_size: int
    train: bool
    note_styles: tuple[str, ...] = ()  # empty: any style
    reader: ShardReader | None = None
    on_bad: str = "error"

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


def make_train_iterator(shard_dir: str, *, tokenizer: Tokenizer, image_size: int,
                        batch_size: int, seed: int, process_index: int = 0, process_count: int = 1,
                        workers: int = 0, note_styles: tuple[str, ...] = (),
                        split: str = "train", on_bad_example: str = "error",
                        start_batch: int = 0) -> grain.DatasetIterator:
    """Endless iterator of per-process batches (dicts of numpy arrays).

    `batch_size` is the per-process batch; the trainer assembles the global batch across hosts.
    Shards are opened (and checked against the manifest's counts) here, so a truncated shard
    fails before training starts.
    """
    reader = ShardReader(shard_paths(shard_dir, split), expected_counts(shard_dir, split))
    ds = grain.MapDataset.range(len(reader)).shuffle(seed=seed)
    ds = ds.random_map(Preprocess(tokenizer, image_size, True, note_styles, reader, on_bad_example),
                       seed=seed + 1)
    ds = ds.repeat(None)
    if process_count > 1:
        ds = ProcessRows(ds, process_index, process_count, batch_size)
    ds = batches = ds.batch(batch_size, drop_remainder=True)
    if start_batch:
        # Position by construction: batch k is the same for any worker or process count, so a
        # run can resume where no saved iterator state fits (e.g. another number of hosts).
        ds = ds[start_batch:]
    # One prefetch thread: the per-example work holds the GIL often enough that a second thread
    # only adds contention (bench/input_pipeline.py: 1.46 cores busy for no more examples/s).
    # More throughput comes from worker processes.
    it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=4))
    if workers > 0:
        # Workers then stack each batch straight into shared memory. grain enables this itself
        # only when the dataset handed to mp_prefetch is the batch (batching before
        # to_iter_dataset is what keeps batch k the same for any number of workers) and only
        # for 2+ workers; otherwise every batch is stacked, then copied again into shared
        # memory: a fifth of a worker's time at 224 px (bench/input_pipeline.py).
        batches.enable_shared_memory_output()
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return iter(it_ds)
