"""TensorFlow Datasets builders (array_record files), written and read without TensorFlow.

    dermjax_manifest/<name>   any docs/formats.md section 6 manifest (image_path, label, record fields)
    dermjax_ham10000          HAM10000, split train/val/test by lesion exactly as our shards are

Images go in as JPEG bytes (the published file's bytes unless --max-side asks for smaller),
so no TensorFlow encoder is needed; Text and ClassLabel features need none either. Read with
`tfds.data_source(name, data_dir=...)` or `tfds.builder_from_directory(path).as_data_source()`,
which also feed `grain.MapDataset.source(...)`. Text features come back as bytes.

DatasetInfo is built with `tfds.core.DatasetInfo` directly: `dataset_info_from_configs()`
fails for builders defined outside a TFDS dataset package (ENVIRONMENT.md).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core.utils import py_utils

from dermjax.core.errors import DermjaxError
from dermjax.data import records as records_lib, shards
from dermjax.data.pairs import NOTE_FIELDS, pair
from dermjax.data.sources import ham10000, manifest as manifest_source
from dermjax.data.sources._csv import read_rows
from dermjax.data.splits import split_of
from dermjax.notes.ontology import EVAL_CLASSES
from dermjax.notes.styles import template_note

HAM_CITATION = """@article{tschandl2018ham10000,
  title={The HAM10000 dataset, a large collection of multi-source dermatoscopic images of common
         pigmented skin lesions},
  author={Tschandl, Philipp and Rosendahl, Cliff and Kittler, Harald},
  journal={Scientific Data}, volume={5}, pages={180161}, year={2018}}"""


def _common_features(classes: list[str]) -> dict:
    return {
        "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
        "image_id": tfds.features.Text(),
        "label": tfds.features.ClassLabel(names=classes),
        "patient_id": tfds.features.Text(),  # "" when unknown
        "dataset": tfds.features.Text(),
        "image_sha256": tfds.features.Text(),  # of the file as published, as in our shards
        "record": tfds.features.Text(),  # the case record (docs/formats.md section 1) as JSON
    }


def _example(record: dict, label: str, max_side: int) -> dict:
    jpeg, digest = records_lib.load_jpeg(record["image_path"], max_side)
    rec = {k: v for k, v in record.items() if k != "image_path"}
    return {
        "image": jpeg, "image_id": record["image_id"], "label": label,
        "patient_id": record.get("patient_id") or "", "dataset": record.get("dataset") or "",
        "image_sha256": digest, "record": json.dumps(rec, sort_keys=True),
    }


class _LocalBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Builders over local files: nothing to download, hence no checksums file and no code path.

    TFDS otherwise locates the builder's source package through `importlib_resources`, a
    backport that Python 3.11 installs do not have, and fails before generating anything.
    """

    @py_utils.classproperty
    @classmethod
    def code_path(cls):
        return None


@dataclasses.dataclass(eq=False)
class ManifestConfig(tfds.core.BuilderConfig):
    csv_path: str = ""
    classes: tuple[str, ...] = ()
    split_by_patient: bool = False
    max_side: int = 0


class DermjaxManifest(_LocalBuilder):
    """A bring-your-own benchmark manifest; one config per manifest (its name)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Manifest CSV -> image (JPEG), label, case-record fields."}

    def _info(self) -> tfds.core.DatasetInfo:
        cfg: ManifestConfig = self.builder_config
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"dermjax manifest {cfg.name} ({cfg.csv_path}); docs/formats.md section 6.",
            features=tfds.features.FeaturesDict(_common_features(list(cfg.classes))),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        cfg: ManifestConfig = self.builder_config
        records = manifest_source.load(cfg.csv_path)
        if not cfg.split_by_patient:
            return {"test": self._generate_examples(records)}
        by_split: dict[str, list] = {}
        for r in records:
            by_split.setdefault(split_of(r), []).append(r)
        return {s: self._generate_examples(rs) for s, rs in sorted(by_split.items())}

    def _generate_examples(self, records):
        cfg: ManifestConfig = self.builder_config
        for r in records:
            yield r["image_id"], _example(r, r["label"], cfg.max_side)


@dataclasses.dataclass(eq=False)
class Ham10000Config(tfds.core.BuilderConfig):
    root: str = ""
    max_side: int = 0


class DermjaxHam10000(_LocalBuilder):
    """HAM10000 with canonical diagnosis groups, lesion-level splits and a grounded note."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "HAM10000 metadata v1 -> groups, lesion-level train/val/test, template note."}
    CLASSES = [c for c in EVAL_CLASSES if c != "squamous cell carcinoma"]  # HAM has no SCC class

    def _info(self) -> tfds.core.DatasetInfo:
        features = _common_features(self.CLASSES)
        features["dx"] = tfds.features.Text()  # the published code: mel, nv, bcc, akiec, bkl, df, vasc
        features["note"] = tfds.features.Text()
        return tfds.core.DatasetInfo(
            builder=self,
            description="HAM10000 (Tschandl et al. 2018), CC BY-NC-SA 4.0: dermoscopic images of "
                        "pigmented lesions. patient_id is the lesion_id; splits never separate a lesion.",
            features=tfds.features.FeaturesDict(features),
            supervised_keys=("image", "label"),
            homepage="https://doi.org/10.7910/DVN/DBW86T",
            citation=HAM_CITATION,
            license="CC BY-NC-SA 4.0",
        )

    def _split_generators(self, dl_manager):
        cfg: Ham10000Config = self.builder_config
        records = ham10000.load(cfg.root)
        dx = {r["image_id"].strip(): r["dx"].strip().lower()
              for r in read_rows(os.path.join(cfg.root, "HAM10000_metadata.csv"), ham10000.REQUIRED)}
        by_split: dict[str, list] = {}
        for r in records:
            by_split.setdefault(split_of(r), []).append(r)
        return {s: self._generate_examples(rs, dx) for s, rs in sorted(by_split.items())}

    def _generate_examples(self, records, dx):
        cfg: Ham10000Config = self.builder_config
        for r in records:
            ex = _example(r, r["diagnosis_group"], cfg.max_side)
            ex["dx"] = dx[r["image_id"]]
            ex["note"] = template_note({k: v for k, v in r.items() if k != "image_path"}, 0)
            yield r["image_id"], ex


@dataclasses.dataclass(eq=False)
class PairsConfig(tfds.core.BuilderConfig):
    shard_dir: str = ""
    classes: tuple[str, ...] = ()


class DermjaxPairs(_LocalBuilder):
    """A dermjax shard folder's image-note pairs (dermjax-prep export-pairs --format tfds)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Shards (schema 1) -> image, label, record and every note with its verdict."}

    def _info(self) -> tfds.core.DatasetInfo:
        cfg: PairsConfig = self.builder_config
        text = tfds.features.Text
        note = {"style": text(), "text": text(), "generator": text(), "seed": tfds.features.Scalar(np.int64),
                "ok": tfds.features.Scalar(np.bool_), "outcome": text(), "violations": text(), "note_json": text()}
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"dermjax image-note pairs from {cfg.shard_dir}: every note with the verifier's verdict.",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                "image_id": text(), "dataset": text(), "split": text(), "image_sha256": text(),
                "label": tfds.features.ClassLabel(names=list(cfg.classes)), "label_name": text(), "record": text(),
                "notes": tfds.features.Sequence(note),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        cfg: PairsConfig = self.builder_config
        return {s: self._generate_examples(s) for s in sorted(shards.load_manifest(cfg.shard_dir)["splits"])}

    def _generate_examples(self, split):
        cfg: PairsConfig = self.builder_config
        for ex in shards.read_split(cfg.shard_dir, split):
            row = pair(ex, list(cfg.classes))
            row["notes"] = {k: [n[k] for n in row["notes"]] for k in
                            NOTE_FIELDS}
            yield row["image_id"], row


def prepare_pairs(shard_dir: str, out: str) -> dict[str, int]:
    """Writes a shard folder's pairs as a TFDS data directory at `out` (the folder
    `tfds.builder_from_directory` opens); returns the count per split."""
    classes = tuple(shards.load_manifest(shard_dir)["classes"])
    work = out + ".build"
    builder = DermjaxPairs(data_dir=work, config=PairsConfig(name="default", shard_dir=os.path.abspath(shard_dir),
                                                            classes=classes), file_format="array_record")
    try:
        builder.download_and_prepare()
    except (OSError, ValueError, KeyError) as e:
        raise DermjaxError(f"tfds: exporting {shard_dir} failed: {e}") from None
    os.replace(str(builder.data_dir), out)
    shutil.rmtree(work, ignore_errors=True)
    return {s: int(info.num_examples) for s, info in sorted(builder.info.splits.items())}


def prepare(source: str, root: str, data_dir: str, *, name: str | None = None, max_side: int = 0,
            classes: list[str] | None = None, split_by_patient: bool = False) -> dict:
    """Builds the data set under data_dir (reusing a finished one); returns where and how many."""
    if not os.path.exists(root):
        raise DermjaxError(f"{root}: does not exist")
    if source == "manifest":
        csv_path = os.path.join(root, "manifest.csv") if os.path.isdir(root) else root
        found = sorted({r["label"] for r in manifest_source.load(csv_path)})
        classes = classes or found
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise DermjaxError(f"{csv_path}: label(s) {', '.join(unknown)} not in the class list")
        config = ManifestConfig(
            name=_config_name(name or os.path.splitext(os.path.basename(csv_path))[0]),
            csv_path=os.path.abspath(csv_path), classes=tuple(classes), split_by_patient=split_by_patient,
            max_side=max_side)
        builder = DermjaxManifest(data_dir=data_dir, config=config, file_format="array_record")
    elif source == "ham10000":
        config = Ham10000Config(name="default", root=os.path.abspath(root), max_side=max_side)
        builder = DermjaxHam10000(data_dir=data_dir, config=config, file_format="array_record")
    else:
        raise DermjaxError(f"tfds: unknown source {source!r}; known: manifest, ham10000")
    try:
        builder.download_and_prepare()
    except (OSError, ValueError, KeyError) as e:
        raise DermjaxError(f"tfds: building {builder.name} from {root} failed: {e}") from None
    return {"name": f"{builder.name}/{builder.builder_config.name}", "version": str(builder.version),
            "path": str(builder.data_dir),
            "splits": {s: int(info.num_examples) for s, info in sorted(builder.info.splits.items())}}


def _config_name(text: str) -> str:
    # TFDS config names become folder names and must be identifiers-ish.
    out = "".join(c if c.isalnum() or c in "_-." else "_" for c in text.strip())
    if not out:
        raise DermjaxError(f"tfds: cannot make a config name from {text!r}; give --name")
    return out
