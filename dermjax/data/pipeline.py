"""grain input pipeline: ArrayRecord shards -> this process's slice -> shuffle -> decode and
augment -> one note per example per epoch -> tokenize -> batch -> multiprocess prefetch.

Every random choice comes from grain's per-element generators (seed + element index + epoch),
so the stream is identical for any number of workers and resumes exactly from a saved state.
"""
from __future__ import annotations

import dataclasses
import io

import grain
import numpy as np
from PIL import Image

from dermjax.data import augment, records
from dermjax.data.shards import shard_paths
from dermjax.data.tokenizer import Tokenizer


@dataclasses.dataclass
class Preprocess:
    """decode + (augment) + pick a note + tokenize. A dataclass so grain can pickle it."""

    tokenizer: Tokenizer
    image_size: int
    train: bool
    note_styles: tuple[str, ...] = ()  # empty: any style

    def __call__(self, data: bytes, rng: np.random.Generator) -> dict:
        ex = records.decode_example(data)
        img = Image.open(io.BytesIO(ex["image"])).convert("RGB")
        if self.train:
            image = augment.train_augment(img, self.image_size, rng)
        else:
            image = augment.center_square(img, self.image_size)
        notes = [n for n in ex["notes"] if not self.note_styles or n["style"] in self.note_styles]
        if notes:
            text = notes[int(rng.integers(len(notes)))]["text"] if self.train else notes[0]["text"]
        else:
            text = ""
        return {"image": image.astype(np.uint8), "tokens": self.tokenizer.encode(text),
                "label": np.int32(ex["label"])}


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
                        split: str = "train") -> grain.DatasetIterator:
    """Endless iterator of per-process batches (dicts of numpy arrays).

    `batch_size` is the per-process batch; the trainer assembles the global batch across hosts.
    """
    source = grain.sources.ArrayRecordDataSource(shard_paths(shard_dir, split))
    ds = grain.MapDataset.source(source).shuffle(seed=seed)
    ds = ds.random_map(Preprocess(tokenizer, image_size, True, note_styles), seed=seed + 1)
    ds = ds.repeat(None)
    if process_count > 1:
        ds = ProcessRows(ds, process_index, process_count, batch_size)
    ds = ds.batch(batch_size, drop_remainder=True)
    it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=4))
    if workers > 0:
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return iter(it_ds)
