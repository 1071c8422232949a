"""Reading a compiled program's optimized HLO text: collectives, FLOPs and memory traffic per
step, with every instruction counted as often as it runs.

XLA's own `cost_analysis()` counts the body of a while loop once, so for a model whose layers
run under `jax.lax.scan` it reports about 1/depth of the real FLOPs. Here each computation gets
a multiplicity: 1 for the entry, times the known trip count for while bodies, summed over
callers.
"""
from __future__ import annotations

import dataclasses
import math
import re

import numpy as np

DTYPE_BYTES = {"pred": 1, "s4": 0.5, "u4": 0.5, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2,
               "s32": 4, "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16,
               "f8e4m3fn": 1, "f8e5m2": 1, "f8e4m3b11fnuz": 1, "f8e4m3fnuz": 1, "f8e5m2fnuz": 1, "token": 0}
COLLECTIVES = {"all-gather": "all-gather", "all-gather-start": "all-gather",
               "all-reduce": "all-reduce", "all-reduce-start": "all-reduce",
               "reduce-scatter": "reduce-scatter", "reduce-scatter-start": "reduce-scatter",
               "all-to-all": "all-to-all", "all-to-all-start": "all-to-all",
               "collective-permute": "collective-permute", "collective-permute-start": "collective-permute"}
# Instructions that move no data through HBM of their own.
_NO_TRAFFIC = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast", "while", "conditional",
               "call", "after-all", "partition-id", "replica-id", "iota", "opt-barrier", "add-dependency",
               "all-gather-done", "all-reduce-done", "collective-permute-done", "copy-done", "async-done",
               "send-done", "recv-done"}

_ARRAY = re.compile(r"\b([a-z][a-z0-9]*)\[([0-9,]*)\]")
_HEADER = re.compile(r"^(ENTRY\s+)?%?([\w.\-]+)\s*\((.*)\)\s*->\s*(.*)\{\s*$")
_INSTR = re.compile(r"^\s*(ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$")
_CALLEES = re.compile(r"\b(calls|to_apply|body|condition|true_computation|false_computation)=%?([\w.\-]+)")
_BRANCHES = re.compile(r"branch_computations=\{([^}]*)\}")
_TRIP = re.compile(r'"known_trip_count":\{"n":"(\d+)"')


def _split_type(rest: str) -> tuple[str, str]:
    """'(f32[2], bf16[3]) all-gather(%a), ...' -> ('(f32[2], bf16[3])', 'all-gather(%a), ...')."""
    if rest.startswith("("):
        depth = 0
        for i, ch in enumerate(rest):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0:
                return rest[:i + 1], rest[i + 1:].strip()
    head, _, tail = rest.partition(" ")
    return head, tail.strip()


def arrays(type_text: str) -> list[tuple[str, tuple[int, ...]]]:
    """Every array in a type ('(bf16[4,8]{1,0}, f32[])' -> [('bf16', (4, 8)), ('f32', ())])."""
    out = []
    for dtype, dims in _ARRAY.findall(type_text):
        if dtype in DTYPE_BYTES:
            out.append((dtype, tuple(int(d) for d in dims.split(",") if d)))
    return out


def nbytes(type_text: str) -> float:
    return sum(DTYPE_BYTES[d] * math.prod(s) for d, s in arrays(type_text))


@dataclasses.dataclass
class Instr:
    name: str
    type: str
    opcode: str
    operands: list[str]
    attrs: str
    raw: str = ""  # the text after the type: opcode(operands), attributes


@dataclasses.dataclass
class Computation:
    name: str
    instrs: list[Instr]
    shapes: dict[str, str]  # value name -> type text (parameters and instructions)


def _operands(text: str) -> tuple[list[str], str]:
    """'(%a, %b), dims={1}' -> (['a', 'b'], 'dims={1}')."""
    depth, i = 0, 0
    for i, ch in enumerate(text):
        depth += ch in "({"
        depth -= ch in ")}"
        if depth == 0:
            break
    inner, attrs = text[1:i], text[i + 1:]
    return re.findall(r"%([\w.\-]+)", inner), attrs


def parse(hlo: str) -> tuple[dict[str, Computation], str]:
    """HLO module text -> ({name: computation}, entry name)."""
    comps, entry, cur = {}, None, None
    for line in hlo.splitlines():
        if cur is None:
            m = _HEADER.match(line.strip())
            if m:
                cur = Computation(m.group(2), [], {})
                if m.group(1):
                    entry = cur.name
                for pname, ptype in re.findall(r"([\w.\-]+):\s*((?:\([^)]*\))|[^,()]+(?:\[[^\]]*\])?(?:\{[^}]*\})?)",
                                               m.group(3)):
                    cur.shapes[pname] = ptype
            continue
        if line.strip() == "}":
            comps[cur.name] = cur
            cur = None
            continue
        m = _INSTR.match(line)
        if not m:
            continue
        name, rest = m.group(2), m.group(3)
        type_text, after = _split_type(rest)
        opcode, _, args = after.partition("(")
        operands, attrs = _operands("(" + args)
        cur.instrs.append(Instr(name, type_text, opcode.strip(), operands, attrs, after))
        cur.shapes[name] = type_text
    return comps, entry


def multiplicities(comps: dict[str, Computation], entry: str) -> tuple[dict[str, float], set[str], list[str]]:
    """(how often each computation runs per execution, the fusion bodies, while loops whose trip
    count XLA does not state: counted once)."""
    edges: dict[str, list[tuple[str, float]]] = {c: [] for c in comps}
    fused, unknown = set(), []
    for comp in comps.values():
        for ins in comp.instrs:
            trips = 1.0
            if ins.opcode == "while":
                m = _TRIP.search(ins.attrs)
                n = float(m.group(1)) if m else _counted_loop(comps, comp, ins)
                trips = n if n is not None else 1.0
                if n is None:
                    unknown.append(f"{comp.name}/{ins.name}")
            for kind, callee in _CALLEES.findall(ins.attrs):
                if callee in comps:
                    edges[comp.name].append((callee, trips if kind in ("body", "condition") else 1.0))
                    if ins.opcode == "fusion" and kind == "calls":
                        fused.add(callee)
            for group in _BRANCHES.findall(ins.attrs):
                for callee in re.findall(r"%?([\w.\-]+)", group):
                    if callee in comps:
                        edges[comp.name].append((callee, 1.0))
    mult = {c: 0.0 for c in comps}
    mult[entry] = 1.0
    # Callers precede callees in a topological order of the (acyclic) call graph.
    order, seen = [], set()

    def visit(c):
        if c in seen:
            return
        seen.add(c)
        for callee, _ in edges[c]:
            visit(callee)
        order.append(c)

    for c in comps:
        visit(c)
    for c in reversed(order):
        for callee, trips in edges[c]:
            mult[callee] += mult[c] * trips
    return mult, fused, unknown


def _constant(comp: Computation, name: str) -> float | None:
    ins = next((i for i in comp.instrs if i.name == name), None)
    m = re.match(r"constant\((-?\d+)\)", ins.raw) if ins is not None and ins.opcode == "constant" else None
    return float(m.group(1)) if m else None


def _counted_loop(comps: dict[str, Computation], caller: Computation, loop: Instr) -> float | None:
    """The trip count of a while loop `for (i = init; i < limit; i += step)`, read from its
    condition (`tuple[k] < constant`), its body (`tuple[k] + constant` in the root tuple) and its
    initial tuple: what jax.lax.scan and fori_loop emit, and XLA's windowed-einsum loops (whose
    counter may sit anywhere in the tuple and step by 2). The TPU compiler does not always
    annotate known_trip_count."""
    cond = re.search(r"condition=%?([\w.\-]+)", loop.attrs)
    body = re.search(r"body=%?([\w.\-]+)", loop.attrs)
    cond, body = comps.get(cond.group(1)) if cond else None, comps.get(body.group(1)) if body else None
    if cond is None or not cond.instrs:
        return None
    root = cond.instrs[-1]
    if root.opcode != "compare" or "direction=LT" not in root.attrs or len(root.operands) < 2:
        return None
    limit = _constant(cond, root.operands[1])
    counter = next((i for i in cond.instrs if i.name == root.operands[0]), None)
    m = re.search(r"index=(\d+)", counter.attrs) if counter is not None and counter.opcode == "get-tuple-element" else None
    if limit is None or m is None:
        return None
    k = int(m.group(1))
    step, init = 1.0, 0.0
    if body is not None and body.instrs and body.instrs[-1].opcode == "tuple" and len(body.instrs[-1].operands) > k:
        nxt = next((i for i in body.instrs if i.name == body.instrs[-1].operands[k]), None)
        if nxt is not None and nxt.opcode == "add":
            consts = [c for c in (_constant(body, o) for o in nxt.operands) if c is not None]
            step = consts[0] if consts else step
    start = next((i for i in caller.instrs if loop.operands and i.name == loop.operands[0]), None)
    if start is not None and start.opcode == "tuple" and len(start.operands) > k:
        c = _constant(caller, start.operands[k])
        init = c if c is not None else init
    return max(0.0, math.ceil((limit - init) / step)) if step > 0 else None


def _replica_groups(attrs: str, num_devices: int) -> list[list[int]] | None:
    """The device groups of a collective, from any of XLA's three spellings."""
    m = re.search(r"replica_groups=\{((?:\{[\d,]*\},?)*)\}", attrs)
    if m:
        return [[int(x) for x in g.split(",") if x] for g in re.findall(r"\{([\d,]*)\}", m.group(1))]
    m = re.search(r"replica_groups=\[(\d+),(\d+)\]<=\[([\d,]+)\](?:T\(([\d,]+)\))?", attrs)
    if m:
        dims = [int(x) for x in m.group(3).split(",")]
        ids = np.arange(math.prod(dims)).reshape(dims)
        if m.group(4):
            ids = ids.transpose([int(x) for x in m.group(4).split(",")])
        return ids.reshape(int(m.group(1)), int(m.group(2))).tolist()
    m = re.search(r"replica_groups=mesh\[([^\]]*)\](?:,\s*device_ids=\(\[([\d,]+)\](?:T\(([\d,]+)\))?\))?\s*\{([^}]*)\}",
                  attrs)
    if m:
        axes = re.findall(r"'([^']+)'=(\d+)", m.group(1))
        names, sizes = [a for a, _ in axes], [int(s) for _, s in axes]
        grouped = re.findall(r"'([^']+)'", m.group(4))
        ids = np.arange(math.prod(sizes))
        if m.group(2):  # the devices in mesh order: an iota reshaped and transposed
            dims = [int(x) for x in m.group(2).split(",")]
            ids = ids.reshape(dims)
            if m.group(3):
                ids = ids.transpose([int(x) for x in m.group(3).split(",")])
        ids = ids.reshape(sizes)
        inner = [names.index(a) for a in grouped]
        outer = [i for i in range(len(names)) if i not in inner]
        ids = ids.transpose(outer + inner)
        return ids.reshape(-1, math.prod(sizes[i] for i in inner) if inner else 1).tolist()
    if "replica_groups={}" in attrs:
        return [list(range(num_devices))]
    return None


@dataclasses.dataclass
class Collective:
    kind: str
    bytes: float  # per device and execution: the full (gathered / reduced) array
    count: float  # executions per step
    group_size: int
    mesh_axes: tuple[str, ...]  # the mesh axes its groups span (empty when unknown)
    shape: str
    computation: str


def _mesh_axes(groups, mesh_shape: dict[str, int]) -> tuple[str, ...]:
    if not groups:
        return ()
    names, sizes = list(mesh_shape), list(mesh_shape.values())
    coords = np.array(np.unravel_index(np.asarray(groups[0]), sizes)).T  # devices in mesh order
    return tuple(n for i, n in enumerate(names) if len(set(coords[:, i])) > 1)


@dataclasses.dataclass
class Analysis:
    flops: float
    hbm_bytes: float
    collectives: list[Collective]
    unknown_trip_counts: list[str]

    def by_kind(self) -> dict[str, dict]:
        out = {}
        for c in self.collectives:
            k = out.setdefault(c.kind, {"ops": 0.0, "bytes": 0.0, "ring_bytes": 0.0})
            k["ops"] += c.count
            k["bytes"] += c.bytes * c.count
            n = max(c.group_size, 1)
            # What each device sends over its links in a ring implementation.
            factor = (2 * (n - 1) / n if c.kind in ("all-reduce", "all-gather-as-all-reduce")
                      else 1.0 if c.kind == "collective-permute" else (n - 1) / n)
            k["ring_bytes"] += c.bytes * c.count * factor
        return out


def _dot_flops(ins: Instr, shapes: dict[str, str]) -> float:
    out = arrays(ins.type)
    if not out or not ins.operands:
        return 0.0
    out_elems = math.prod(out[0][1])
    lhs = arrays(shapes.get(ins.operands[0], ""))
    if ins.opcode == "dot":
        m = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", ins.attrs)
        if not lhs or not m:
            return 0.0
        contract = math.prod(lhs[0][1][int(d)] for d in m.group(1).split(",") if d)
        return 2.0 * out_elems * contract
    rhs = arrays(shapes.get(ins.operands[1], "")) if len(ins.operands) > 1 else []
    return _conv_flops(ins.attrs, lhs[0][1] if lhs else None, rhs[0][1] if rhs else None, out[0][1])


def _window(attrs: str) -> dict[str, list]:
    m = re.search(r"window=\{([^}]*)\}", attrs)
    out = {}
    for part in (m.group(1).split() if m else []):
        key, _, value = part.partition("=")
        if key == "pad":
            out[key] = [tuple(int(v) for v in p.split("_")) for p in value.split("x")]
        else:
            out[key] = [int(v) for v in value.split("x")]
    return out


def _conv_flops(attrs: str, lhs, rhs, out) -> float:
    """2 x multiply-adds of a convolution, counting for each spatial dimension only the
    (output, kernel tap) pairs that land on a real input element: the TPU compiler writes
    batched matmuls as convolutions whose "spatial" dimensions are batch dimensions spread out
    by dilation and padding, so most taps of their windows fall on holes."""
    m = re.search(r"dim_labels=([^_]+)_([^-]+)->(\S+?)[,\s]", attrs + " ")
    if lhs is None or rhs is None or not m:
        return 0.0
    lhs_l, rhs_l, out_l = m.group(1), m.group(2), m.group(3)
    w = _window(attrs)
    spatial = [c for c in lhs_l if c.isdigit()]
    valid = 1
    for n, c in enumerate(sorted(spatial)):
        size_in, size_k, size_out = lhs[lhs_l.index(c)], rhs[rhs_l.index(c)], out[out_l.index(c)]
        stride = w.get("stride", [1] * len(spatial))[n]
        pad_lo = w.get("pad", [(0, 0)] * len(spatial))[n][0]
        base = w.get("lhs_dilate", [1] * len(spatial))[n]
        dil = w.get("rhs_dilate", [1] * len(spatial))[n]
        o = np.arange(size_out) * stride - pad_lo
        count = 0
        for k in range(size_k):
            idx = o + k * dil
            ok = (idx % base == 0) & (idx >= 0) & (idx // base < size_in)
            count += int(ok.sum())
        valid *= count
    groups = re.search(r"feature_group_count=(\d+)", attrs)
    bgroups = re.search(r"batch_group_count=(\d+)", attrs)
    fin = lhs[lhs_l.index("f")] / (int(groups.group(1)) if groups else 1)
    batch = lhs[lhs_l.index("b")] / (int(bgroups.group(1)) if bgroups else 1)
    return 2.0 * fin * out[out_l.index("f")] * batch * valid


def _traffic(ins: Instr, comp: Computation, comps: dict[str, Computation]) -> float:
    """HBM bytes an instruction reads and writes. A fusion reads only the slices it takes of an
    operand it dynamic-slices, and updates in place what it dynamic-update-slices: what a
    scanned layer does to the stacked parameters and activations."""
    sizes = [nbytes(comp.shapes.get(o, "")) for o in ins.operands]
    out = nbytes(ins.type)
    if ins.opcode in ("slice-start", "dynamic-slice"):  # reads the slice only
        part = _split_tuple(ins.type)[-1] if ins.type.startswith("(") else ins.type
        return 2 * nbytes(part)
    body = comps.get(m.group(1)) if ins.opcode == "fusion" and (m := re.search(r"calls=%?([\w.\-]+)", ins.attrs)) else None
    if body is None:
        return out + sum(sizes)
    params = {}
    for i in body.instrs:
        if i.opcode == "parameter" and (m := re.match(r"parameter\((\d+)\)", i.raw)):
            params[i.name] = int(m.group(1))
    users: dict[str, list[Instr]] = {}
    for i in body.instrs:
        for o in i.operands:
            users.setdefault(o, []).append(i)
    root = body.instrs[-1] if body.instrs else None
    for name, index in params.items():
        us = users.get(name, [])
        if index >= len(sizes) or not us:
            continue
        if all(u.opcode == "dynamic-slice" for u in us):
            sizes[index] = sum(nbytes(u.type) for u in us)
        elif all(u.opcode == "dynamic-update-slice" and u.operands[0] == name for u in us):
            sizes[index] = 0.0  # updated in place; the written slice is counted as output
    if root is not None:
        by_name = {i.name: i for i in body.instrs}
        outs = [by_name.get(o) for o in root.operands] if root.opcode == "tuple" else [root]
        out = 0.0
        for o in outs:
            while o is not None and o.opcode == "bitcast" and o.operands:
                o = by_name.get(o.operands[0])
            if o is not None and o.opcode == "dynamic-update-slice" and len(o.operands) > 1:
                out += nbytes(body.shapes.get(o.operands[1], ""))  # the written slice
            elif o is not None:
                out += nbytes(o.type)
    return out + sum(sizes)


def _produced_by_update(name: str, comp: Computation, comps: dict[str, Computation]) -> bool:
    """Whether a value is a dynamic-update-slice (a shard written into a buffer), seen through
    converts, bitcasts, copies and fusions whose root is one."""
    by_name = {i.name: i for i in comp.instrs}
    ins = by_name.get(name)
    while ins is not None and ins.opcode in ("convert", "bitcast", "copy", "copy-done") and ins.operands:
        ins = by_name.get(ins.operands[0])
    if ins is None:
        return False
    if ins.opcode == "dynamic-update-slice":
        return True
    m = re.search(r"calls=%?([\w.\-]+)", ins.attrs) if ins.opcode == "fusion" else None
    body = comps.get(m.group(1)) if m else None
    return bool(body and body.instrs) and _produced_by_update(body.instrs[-1].name, body, comps)


def _gathers(ins: Instr, comp: Computation, comps: dict[str, Computation]) -> bool:
    """An all-reduce that sums shards each device wrote into a zero buffer: an all-gather."""
    return bool(ins.operands) and all(_produced_by_update(o, comp, comps) for o in ins.operands)


def analyze(hlo: str, mesh_shape: dict[str, int]) -> Analysis:
    comps, entry = parse(hlo)
    mult, fused, unknown = multiplicities(comps, entry)
    n_dev = math.prod(mesh_shape.values())
    flops = hbm = 0.0
    collectives = []
    for comp in comps.values():
        times = mult.get(comp.name, 0.0)
        if not times:
            continue
        for ins in comp.instrs:
            if ins.opcode in ("dot", "convolution"):
                flops += times * _dot_flops(ins, comp.shapes)
            if comp.name not in fused and ins.opcode not in _NO_TRAFFIC and not ins.opcode.endswith("-done"):
                hbm += times * _traffic(ins, comp, comps)
            kind = COLLECTIVES.get(ins.opcode)
            if kind is None:
                continue
            # TPU spells some reduce-scatters as an all-reduce inside a fusion of that name, and
            # some all-gathers as an all-reduce of shards written into zeros.
            if kind == "all-reduce" and "reduce-scatter" in comp.name:
                kind = "reduce-scatter"
            elif kind == "all-reduce" and _gathers(ins, comp, comps):
                kind = "all-gather-as-all-reduce"
            if kind == "reduce-scatter" and ins.opcode in ("reduce-scatter", "reduce-scatter-start"):
                size = sum(nbytes(comp.shapes.get(o, "")) for o in ins.operands)  # the input is reduced
            elif ins.opcode.endswith("-start") and ins.type.startswith("(") and kind == "all-gather":
                size = nbytes(_split_tuple(ins.type)[-1])  # (operand, result)
            elif ins.opcode.endswith("-start") and ins.type.startswith("(") and kind == "collective-permute":
                size = nbytes(_split_tuple(ins.type)[0])
            else:
                size = nbytes(ins.type)
            groups = _replica_groups(ins.attrs, n_dev)
            collectives.append(Collective(kind, size, times, len(groups[0]) if groups else n_dev,
                                          _mesh_axes(groups, mesh_shape), ins.type.split("{")[0], comp.name))
    return Analysis(flops, hbm, collectives, unknown)


def _split_tuple(type_text: str) -> list[str]:
    """'(a[1], (b[2], c[3]))' -> ['a[1]', '(b[2], c[3])'] (top-level elements)."""
    inner, parts, depth, cur = type_text[1:-1], [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
            continue
        depth += ch in "([{"
        depth -= ch in ")]}"
        cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts
