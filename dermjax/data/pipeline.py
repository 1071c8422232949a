"""grain input pipeline: ArrayRecord shards -> per-epoch shuffle -> this process's rows of each
global batch -> read, decode, augment, one note per example per epoch, tokenize -> batch ->
multiprocess prefetch.

The grain dataset is the sequence of batch indices; `BatchMaker` turns batch k into arrays.
Everything in batch k (which records, every random choice) is a function of the seed and the
positions in one global stream, so the stream is identical for any number of workers or
processes and resumes exactly from a saved state (or from a batch number). Working a batch at a
time, rather than an element at a time through grain's per-element shuffle and random-map
machinery, saves about a fifth of the CPU per example (bench/input_pipeline.py), and images are
written straight into the batch array (in shared memory when a worker process makes it).
A record that cannot be read or decoded is reported by shard file and index (or replaced).
"""
from __future__ import annotations

import dataclasses
import functools
import json

import grain
import numpy as np
from absl import logging

from dermjax.data import augment
from dermjax.data.shards import ShardReader, expected_counts, shard_paths
from dermjax.data.splits import keeps_notes
from dermjax.core.tokenizer import Tokenizer
from dermjax.core.errors import DermjaxError

ON_BAD_EXAMPLE = ("error", "skip")
# A run of this many unreadable records in a row means a broken shard, not a stray bad image.
MAX_CONSECUTIVE_BAD = 32
# Random numbers per example: the augmentation's, then one for the note.
UNIFORMS = augment.UNIFORMS + 1
# Long enough never to run out: the stream of batches is endless (epochs follow each other).
_ENDLESS = 2**62


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a bijection of uint64 whose outputs look independent."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def uniforms(seed: int, positions: np.ndarray, n: int) -> np.ndarray:
    """[len(positions), n] uniforms in [0, 1), a pure function of (seed, stream position, j).

    Counter-based, so an example's random choices depend on nothing but where it is in the
    global stream: not on the batch it falls in, the process or worker that makes it, or what
    came before (which is what makes resume and any worker count exact).
    """
    with np.errstate(over="ignore"):
        key = _mix64(np.uint64(seed & (2**64 - 1)) + np.uint64(0x9E3779B97F4A7C15))
        counters = positions.astype(np.uint64)[:, None] * np.uint64(n) + np.arange(n, dtype=np.uint64)
        bits = _mix64(_mix64(counters ^ key) + key)
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


@dataclasses.dataclass
class BatchMaker:
    """Batch index k -> this process's rows of global batch k, as numpy arrays. A dataclass so
    grain can pickle it into worker processes.

    Global batch k is stream positions [k*B, (k+1)*B) with B = batch_size * process_count;
    process p makes rows [p*b, (p+1)*b) of it, exactly the part of the global array that
    `make_array_from_process_local_data` places on p's devices. Position g is record
    indices[perm_e[g mod N]] of epoch e = g div N, each epoch its own permutation of the N
    records in `indices` (default: all of the reader's).

    on_bad: "error" raises a DermjaxError naming the shard and record; "skip" logs it and uses
    the next readable record instead. The substitute depends only on the index, so the stream
    stays the same for any number of workers and across resumes, and batches keep their size.
    """

    reader: ShardReader
    tokenizer: Tokenizer | None  # None with with_text=False
    image_size: int
    batch_size: int  # this process's rows
    seed: int
    train: bool = True
    process_index: int = 0
    process_count: int = 1
    note_styles: tuple[str, ...] = ()  # empty: any style
    on_bad: str = "error"
    indices: np.ndarray | None = None  # the records this stream draws from (None: all)
    with_text: bool = True  # False: images alone (unpaired images: no note, no label)
    shared_memory: bool = False  # set in worker processes: batches go straight to grain's transport

    def __post_init__(self):
        if self.on_bad not in ON_BAD_EXAMPLE:
            raise DermjaxError(f"on_bad_example must be one of {', '.join(ON_BAD_EXAMPLE)}, got {self.on_bad!r}")
        self.skipped = 0  # per process: grain workers each count their own
        self._perms: dict[int, np.ndarray] = {}
        if self.indices is not None:
            self.indices = np.asarray(self.indices, np.int64)
            if not len(self.indices):
                raise DermjaxError(f"{self.reader.paths[0]}...: the stream has no records to draw from")

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_perms"}

    def __setstate__(self, state):
        self.__dict__.update(state, _perms={})

    def permutation(self, epoch: int) -> np.ndarray:
        perm = self._perms.get(epoch)
        if perm is None:
            if len(self._perms) >= 2:  # a batch spans at most two epochs
                self._perms.pop(min(self._perms))
            perm = self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(len(self))
        return perm

    def __len__(self) -> int:
        """Records per epoch."""
        return len(self.reader) if self.indices is None else len(self.indices)

    def record(self, slot: int) -> int:
        return slot if self.indices is None else int(self.indices[slot])

    def positions(self, k: int) -> np.ndarray:
        b = self.batch_size
        start = (k * self.process_count + self.process_index) * b
        return np.arange(start, start + b, dtype=np.int64)

    def slots(self, positions: np.ndarray) -> np.ndarray:
        """Stream positions -> slots of `indices` (record numbers when indices is None)."""
        epochs, offsets = np.divmod(positions, len(self))
        return np.array([self.permutation(int(e))[o] for e, o in zip(epochs, offsets)], np.int64)

    def records(self, positions: np.ndarray) -> np.ndarray:
        return np.array([self.record(int(j)) for j in self.slots(positions)], np.int64)

    def __call__(self, k) -> dict:
        pos = self.positions(int(k))
        slots = self.slots(pos)
        u = uniforms(self.seed, pos, UNIFORMS)
        shape = (self.batch_size, self.image_size, self.image_size, 3)
        images = grain.multiprocessing.SharedMemoryArray(shape, np.uint8) if self.shared_memory \
            else np.empty(shape, np.uint8)
        if not self.with_text:
            for row, (slot, ur) in enumerate(zip(slots, u)):
                self.example(int(slot), ur, images[row])
            return {"image": images}
        tokens = np.empty((self.batch_size, self.tokenizer.max_len), np.int32)
        labels = np.empty((self.batch_size,), np.int32)
        for row, (slot, ur) in enumerate(zip(slots, u)):
            ex = self.example(int(slot), ur, images[row])
            notes = [n for n in ex["notes"] if not self.note_styles or n["style"] in self.note_styles]
            if not notes:
                text = ""
            else:
                text = notes[int(ur[-1] * len(notes))]["text"] if self.train else notes[0]["text"]
            tokens[row] = self.tokenizer.encode(text)
            labels[row] = ex["label"]
        return {"image": images, "tokens": tokens, "label": labels}

    def example(self, slot: int, u: np.ndarray, out: np.ndarray) -> dict:
        """Decodes the record at `slot` (or, under "skip", the next readable one of this
        stream's records, so a withheld record never stands in for a paired one) into `out`."""
        n = len(self)
        for attempt in range(MAX_CONSECUTIVE_BAD):
            try:
                return self._decode(self.record((slot + attempt) % n), u, out)
            except DermjaxError as e:
                if self.on_bad == "error":
                    raise
                self.skipped += 1
                logging.warning("skipped bad example (%d so far in this process): %s", self.skipped, e)
        last = self.record((slot + MAX_CONSECUTIVE_BAD - 1) % n)
        raise DermjaxError(f"{MAX_CONSECUTIVE_BAD} consecutive records from record {self.record(slot)} do "
                           f"not decode; last: {self.reader.locate(last)}")

    def _decode(self, index: int, u: np.ndarray, out: np.ndarray) -> dict:
        ex = self.reader.example(index)
        try:
            img = augment.open_image(ex["image"])
            if self.train:
                augment.train_augment(img, self.image_size, u, out=out)
            else:
                augment.center_square(img, self.image_size, out=out)
        except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... on bad bytes
            path, j = self.reader.locate(index)
            raise DermjaxError(f"{path}: record {j} (image_id {ex.get('image_id')!r}): image does not "
                               f"decode ({str(e).strip() or type(e).__name__})") from None
        return ex


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
    keep, withheld = _paired_split(tuple(reader.paths), tuple(reader.counts or ()), fraction, seed)
    return list(keep), list(withheld)


@functools.lru_cache(maxsize=4)
def _paired_split(paths: tuple, counts: tuple, fraction: float, seed: int) -> tuple[tuple, tuple]:
    # Reads every record of the split: cached, since a trainer asks for it at start-up and again
    # for each input stream it opens.
    reader = ShardReader(list(paths), list(counts) or None)
    keep, withheld = [], []
    for i in range(len(reader)):
        record = json.loads(reader.example(i)["record"])
        (keep if keeps_notes(record, fraction, seed) else withheld).append(i)
    if not keep:
        raise DermjaxError(f"paired_fraction {fraction}: no record of {paths[0]}... keeps its notes")
    return tuple(keep), tuple(withheld)


def training_reader(shard_dir: str, split: str = "train") -> ShardReader:
    return _reader([shard_dir], split)


def _reader(shard_dirs: list[str], split: str) -> ShardReader:
    paths, counts = [], []
    for d in shard_dirs:
        paths += shard_paths(d, split)
        counts += expected_counts(d, split)
    reader = ShardReader(paths, counts)
    if len(reader) == 0:
        raise DermjaxError(f"{', '.join(shard_dirs)}: split {split!r} has no examples")
    return reader


def _iterate(ds: grain.MapDataset, makers: list[BatchMaker], workers: int) -> grain.DatasetIterator:
    # One prefetch thread: the Python parts of the per-example work hold the GIL, so a second
    # thread adds contention. More throughput comes from worker processes.
    it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=4))
    if workers > 0:
        for maker in makers:
            maker.shared_memory = True  # pickled into the workers, which alone make batches now
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return iter(it_ds)


def make_train_iterator(shard_dir: str, *, tokenizer: Tokenizer, image_size: int,
                        batch_size: int, seed: int, process_index: int = 0, process_count: int = 1,
                        workers: int = 0, note_styles: tuple[str, ...] = (),
                        split: str = "train", on_bad_example: str = "error",
                        start_batch: int = 0, paired_fraction: float = 1.0,
                        reader: ShardReader | None = None) -> grain.DatasetIterator:
    """Endless iterator of per-process batches (dicts of numpy arrays).

    `batch_size` is the per-process batch; the trainer assembles the global batch across hosts.
    Shards are opened (and checked against the manifest's counts) here, so a truncated shard
    fails before training starts. `start_batch` positions the stream by construction: batch k
    is the same for any worker or process count, so a run can resume where no saved iterator
    state fits (e.g. another number of hosts). `paired_fraction` < 1 trains on the patients
    that keep their notes only (`paired_indices`). `reader`: the split, already open.
    """
    reader = reader or training_reader(shard_dir, split)
    indices = None if paired_fraction >= 1.0 else paired_indices(reader, paired_fraction, seed=0)[0]
    maker = BatchMaker(reader, tokenizer, image_size, batch_size, seed, True, process_index,
                       process_count, tuple(note_styles), on_bad_example, indices)
    return _iterate(grain.MapDataset.range(start_batch, _ENDLESS).map(maker), [maker], workers)


def make_mixed_iterator(shard_dir: str, *, tokenizer: Tokenizer, image_size: int, batch_size: int,
                        unpaired_batch_size: int, seed: int, paired_fraction: float = 1.0,
                        unpaired_shards: tuple[str, ...] = (), process_index: int = 0,
                        process_count: int = 1, workers: int = 0, note_styles: tuple[str, ...] = (),
                        split: str = "train", on_bad_example: str = "error",
                        start_batch: int = 0, reader: ShardReader | None = None) -> grain.DatasetIterator:
    """Per-process batches of paired examples ("image", "tokens", "label": `batch_size` rows)
    plus unpaired images ("unpaired_image": `unpaired_batch_size` rows).

    Unpaired images are the training records of `shard_dir` whose notes are withheld
    (`paired_fraction` < 1) and every training record of `unpaired_shards` (folders whose notes
    and labels are never read). Each stream is shuffled on its own; one iterator carries both,
    so one saved state resumes both exactly. `reader`: the split of `shard_dir`, already open.
    """
    reader = reader or training_reader(shard_dir, split)
    paired, withheld = paired_indices(reader, paired_fraction, seed=0)
    if not withheld and not unpaired_shards:
        raise DermjaxError(f"{shard_dir}: no unpaired images: set paired_fraction < 1 or unpaired_shards")
    common = dict(train=True, process_index=process_index, process_count=process_count,
                  on_bad=on_bad_example)
    makers = [BatchMaker(reader, tokenizer, image_size, batch_size, seed, note_styles=tuple(note_styles),
                         indices=paired if withheld else None, **common)]
    # One reader over both sources of unpaired images: withheld records come first.
    u_reader = _reader([shard_dir] * bool(withheld) + list(unpaired_shards), split)
    u_indices = withheld + list(range(len(reader) * bool(withheld), len(u_reader)))
    # seed + 2: the unpaired stream's own shuffle and augmentation.
    makers.append(BatchMaker(u_reader, None, image_size, unpaired_batch_size, seed + 2, indices=u_indices,
                             with_text=False, **common))
    streams = [grain.MapDataset.range(start_batch, _ENDLESS).map(m) for m in makers]
    return _iterate(Zip(streams, ["", "unpaired_"]), makers, workers)
