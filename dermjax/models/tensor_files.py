"""Named-tensor files from other frameworks, as {name: numpy array}: .safetensors (read and
written here without torch), PyTorch pickles (.pth/.pt/.bin, through torch when installed) and
numpy .npz (big_vision checkpoints).
"""
from __future__ import annotations

import json
import os
import struct

import ml_dtypes
import numpy as np

from dermjax.core.errors import DermjaxError
from dermjax.core.io import atomic_path

# safetensors dtype names <-> numpy dtypes.
SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}
_NAMES = {np.dtype(v): k for k, v in SAFETENSORS_DTYPES.items()}
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


def read_safetensors(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(tensors, the header's __metadata__). Arrays are read-only views of a memory map."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > size - 8:
                raise ValueError(f"header of {n} bytes in a {size}-byte file")
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error) as e:
        raise DermjaxError(f"{path}: not a readable .safetensors file ({e})") from None
    data = np.memmap(path, np.uint8, mode="r", offset=8 + n) if size > 8 + n else np.zeros(0, np.uint8)
    meta = header.pop("__metadata__", None) or {}
    out = {}
    for name, info in header.items():
        dtype = SAFETENSORS_DTYPES.get(info.get("dtype"))
        if dtype is None:
            raise DermjaxError(f"{path}: tensor {name!r} has unsupported dtype {info.get('dtype')!r}")
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if end > len(data) or end - begin != int(np.prod(shape)) * np.dtype(dtype).itemsize:
            raise DermjaxError(f"{path}: tensor {name!r} ({info['dtype']} {list(shape)}) does not fit "
                               f"bytes {begin}..{end} of {len(data)}; truncated file?")
        out[name] = data[begin:end].view(dtype).reshape(shape)
    return out, meta


def write_safetensors(path: str, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> str:
    """Writes under a temporary name, then renames (nothing half-written is ever at `path`)."""
    header, offset, arrays = {}, 0, []
    for name in sorted(tensors):
        a = np.asarray(tensors[name])
        a = a if a.flags.c_contiguous else a.copy()  # (ascontiguousarray would make scalars 1-d)
        if a.dtype not in _NAMES:
            raise DermjaxError(f"{path}: tensor {name!r} has dtype {a.dtype}, which safetensors cannot hold")
        header[name] = {"dtype": _NAMES[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        arrays.append(a)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the format aligns the data to 8 bytes
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for a in arrays:
            f.write(a.tobytes())
    return path


def _torch_pickle(path: str) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise DermjaxError(f"{path}: reading PyTorch pickles needs torch (pip install torch); "
                           f"or convert the file to .safetensors") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds on bad or unsafe files
        raise DermjaxError(f"{path}: cannot load as a PyTorch state dict ({str(e).splitlines()[0]})") from None
    # Training checkpoints wrap the weights: {"state_dict": ...} (open_clip), {"model": ...} (timm, DeiT).
    while isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in ("state_dict", "model", "module", "params") if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict):
        raise DermjaxError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    return {k: (v.float() if v.dtype == torch.bfloat16 else v).numpy() for k, v in obj.items()
            if isinstance(v, torch.Tensor)}


def _npz(path: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise DermjaxError(f"{path}: not a readable .npz file ({e})") from None
    # bfloat16 arrays come back as 2-byte void records.
    return {k: v.view(ml_dtypes.bfloat16) if v.dtype.kind == "V" and v.dtype.itemsize == 2 else v
            for k, v in out.items()}


def read_tensors(path: str) -> dict[str, np.ndarray]:
    """{name: array} from .safetensors, .npz or a PyTorch pickle; names as the file has them."""
    if not os.path.isfile(path):
        raise DermjaxError(f"{path}: weights file not found")
    if path.endswith(".safetensors"):
        return read_safetensors(path)[0]
    if path.endswith(".npz"):
        return _npz(path)
    if path.endswith(TORCH_SUFFIXES):
        return _torch_pickle(path)
    raise DermjaxError(f"{path}: unknown weights format (want .safetensors, .npz or {', '.join(TORCH_SUFFIXES)})")
