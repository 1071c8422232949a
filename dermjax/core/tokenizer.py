"""SentencePiece tokenizer: trained on the training notes, stored beside the shards.

Ids: 0 = pad, 1 = unk, 2 = eos; no bos. Text is case-folded by the normalizer, so "Melanoma"
and "melanoma" are one token stream and prompts need no lower-casing of their own.
"""
from __future__ import annotations

import io
import os
from typing import Iterable

import numpy as np
import sentencepiece as spm

from dermjax.core.errors import DermjaxError
from dermjax.core.io import write_bytes

PAD_ID, UNK_ID, EOS_ID = 0, 1, 2


def train(sentences: Iterable[str], out_path: str, vocab_size: int = 2000) -> str:
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=buf,
        vocab_size=vocab_size,
        model_type="unigram",
        pad_id=PAD_ID, unk_id=UNK_ID, eos_id=EOS_ID, bos_id=-1,
        normalization_rule_name="nmt_nfkc_cf",
        # Small note corpora cannot always fill the requested vocabulary; take what they give.
        hard_vocab_limit=False,
        character_coverage=1.0,
        num_threads=1,  # one thread: the same corpus always gives the same model
        minloglevel=2,
    )
    write_bytes(out_path, buf.getvalue())
    return out_path


class Tokenizer:
    """Picklable wrapper (grain ships transforms to worker processes)."""

    def __init__(self, model_path: str, max_len: int):
        if not os.path.isfile(model_path):
            raise DermjaxError(f"{model_path}: tokenizer model not found; run `dermjax-prep tokenizer`")
        with open(model_path, "rb") as f:
            self._proto = f.read()
        self.max_len = max_len
        self._sp = None
        try:  # now, so a damaged file is named here and not deep inside a data worker
            self.sp
        except (RuntimeError, OSError) as e:
            raise DermjaxError(f"{model_path}: not a readable SentencePiece model ({str(e).strip()}); "
                               "rerun `dermjax-prep tokenizer`") from None

    @property
    def sp(self) -> spm.SentencePieceProcessor:
        if self._sp is None:
            self._sp = spm.SentencePieceProcessor(model_proto=self._proto)
        return self._sp

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def __getstate__(self):
        return {"_proto": self._proto, "max_len": self.max_len, "_sp": None}

    def encode(self, texts: list[str] | str) -> np.ndarray:
        """int32 [N, max_len]: ids, then eos, then pad; truncated texts keep their eos."""
        single = isinstance(texts, str)
        # A one-element list would go through SentencePiece's batch path, which starts a thread
        # pool per call: 10-200x slower than encoding the string, and the pipeline calls this
        # once per example.
        ids = [self.sp.encode(texts)] if single else self.sp.encode(list(texts))
        out = np.full((len(ids), self.max_len), PAD_ID, np.int32)
        for row, seq in zip(out, ids):
            seq = seq[: self.max_len - 1] + [EOS_ID]
            row[: len(seq)] = seq
        return out[0] if single else out

    def decode(self, ids) -> str:
        return self.sp.decode([int(i) for i in ids if i not in (PAD_ID, EOS_ID)])


class WordPieceTokenizer:
    """BERT's WordPiece tokenizer (the `tokenizers` package) from a Hugging Face tokenizer.json,
    or from a vocab.txt (`lowercase` then says whether the vocabulary is uncased).

    Same interface as `Tokenizer`: rows of [CLS] ids [SEP], then 0 (BERT's [PAD]); truncated rows
    keep their [SEP]. Picklable for grain workers (it keeps the tokenizer as JSON text).
    """

    def __init__(self, path: str, max_len: int, lowercase: bool = True):
        # tokenizers (Rust) is imported only for BERT text towers.
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers.implementations import BertWordPieceTokenizer

        if not os.path.isfile(path):
            raise DermjaxError(f"{path}: WordPiece tokenizer not found (tokenizer.json or vocab.txt)")
        try:
            if path.endswith(".txt"):
                self._json = BertWordPieceTokenizer(path, lowercase=lowercase).to_str()
            else:
                with open(path) as f:
                    self._json = f.read()
                HFTokenizer.from_str(self._json)
        except Exception as e:  # tokenizers raises plain Exceptions on malformed files
            raise DermjaxError(f"{path}: not a readable WordPiece tokenizer ({e})") from None
        self.max_len = max_len
        self._tok = None

    @property
    def tok(self):
        if self._tok is None:
            from tokenizers import Tokenizer as HFTokenizer  # as in __init__

            self._tok = HFTokenizer.from_str(self._json)
            self._tok.enable_truncation(self.max_len)
            self._tok.no_padding()
            if self._tok.token_to_id("[PAD]") not in (None, PAD_ID):
                raise DermjaxError(f"WordPiece vocabulary has [PAD] at id {self._tok.token_to_id('[PAD]')}, "
                                   f"not {PAD_ID}")
        return self._tok

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def __getstate__(self):
        return {"_json": self._json, "max_len": self.max_len, "_tok": None}

    def encode(self, texts: list[str] | str) -> np.ndarray:
        single = isinstance(texts, str)
        encodings = self.tok.encode_batch([texts] if single else list(texts))
        out = np.full((len(encodings), self.max_len), PAD_ID, np.int32)
        for row, enc in zip(out, encodings):
            row[: len(enc.ids)] = enc.ids
        return out[0] if single else out

    def decode(self, ids) -> str:
        return self.tok.decode([int(i) for i in ids if i != PAD_ID])


# What a training workdir keeps, by tokenizer kind; the evaluator opens the one it finds.
WORKDIR_NAMES = ("tokenizer.model", "tokenizer.json", "vocab.txt")


def open_tokenizer(path: str, max_len: int) -> Tokenizer | WordPieceTokenizer:
    """SentencePiece for a .model file; WordPiece for tokenizer.json / vocab.txt."""
    if path.endswith((".json", ".txt")):
        return WordPieceTokenizer(path, max_len)
    return Tokenizer(path, max_len)


def workdir_name(path: str) -> str:
    return "vocab.txt" if path.endswith(".txt") else "tokenizer.json" if path.endswith(".json") else "tokenizer.model"


def from_workdir(workdir: str, max_len: int) -> Tokenizer | WordPieceTokenizer:
    for name in WORKDIR_NAMES:
        if os.path.isfile(os.path.join(workdir, name)):
            return open_tokenizer(os.path.join(workdir, name), max_len)
    raise DermjaxError(f"{workdir}: no tokenizer ({' / '.join(WORKDIR_NAMES)}); is it a dermjax-train workdir?")
