"""Cross-modal retrieval metrics, computed in jitted JAX code: class matching (P@k, Recall@k, mAP)
and exact pairs (R@k, MRR). `dermjax.eval.metrics` re-exports `retrieval` and `retrieval_metrics`.

Average precision treats tied similarities as one block, like
`sklearn.metrics.average_precision_score`; top-k lists and pair ranks break ties by gallery index.
Validity masks and padded rows follow the conventions of `dermjax.eval.metrics`: padded rows may
hold any garbage, NaN included, and never influence a result. Embeddings must be finite on valid
rows.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dermjax.core.sharding import batch_sharding, make_mesh, replicated
from dermjax.eval._common import canonical_zero, row_mask

# The sort key of gallery padding: above the key of every finite or infinite similarity.
_PADDING_KEY = 0xFFFFFFFF


def _check_ks(ks: Sequence[int]) -> tuple:
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    return ks


def _check_embeddings(queries, gallery) -> None:
    if queries.ndim != 2 or gallery.ndim != 2 or queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"embeddings must be [N, D] with equal D, got {queries.shape} and {gallery.shape}")


def _class_names(ks: tuple) -> list[str]:
    return [f"p_at_{k}" for k in ks] + [f"recall_at_{k}" for k in ks] + ["map"]


def _pair_names(ks: tuple) -> list[str]:
    return [f"r_at_{k}" for k in ks] + ["mrr"]


def _similarities(queries, gallery):
    # HIGHEST keeps accelerators from rounding to bf16 passes, which would create spurious ties
    # and reorder near neighbours relative to a float32 reference.
    return jnp.matmul(
        queries, gallery.T, precision=jax.lax.Precision.HIGHEST, preferred_element_type=jnp.float32
    )


# ----------------------------------------------------------------------------------------------
# Exact retrieval by sorting every similarity row: `retrieval_metrics`.


def _descending_key(sims):
    """uint32 keys whose ascending order is descending similarity, with equal values equal."""
    bits = jax.lax.bitcast_convert_type(canonical_zero(sims), jnp.uint32)
    ascending = jnp.where((bits >> 31) == 1, ~bits, bits | jnp.uint32(0x80000000))
    return ~ascending


def _sorted_relevance(sims, relevant, g_valid):
    """Every row sorted by descending similarity, ties by gallery index: its relevance bits (int32)
    and similarity keys (uint32; gallery padding has _PADDING_KEY and sorts last)."""
    # XLA's CPU sort is fast only for a single integer operand with the default comparator; a
    # (key, payload) sort or a float sort with its total-order comparator is 5-7x slower. So the
    # similarity key, the gallery index (tie-break, making every key unique and the order that of
    # a stable sort) and the relevance bit are packed into one uint64.
    u64 = jnp.uint64
    sim_key = jnp.where(g_valid[None, :], _descending_key(sims), jnp.uint32(_PADDING_KEY))
    index = jnp.arange(sims.shape[1], dtype=u64)
    packed = (sim_key.astype(u64) << 32) | (index[None, :] << 1) | relevant.astype(u64)
    packed = jax.lax.sort(packed, dimension=1)
    return (packed & u64(1)).astype(jnp.int32), (packed >> 32).astype(jnp.uint32)


def _tie_aware_precision_sum(rel, sim_key, hits):
    """Per sorted row: the sum over relevant items of the precision at the item's rank."""
    # Precision for a relevant item is taken at the end of its block of tied similarities, as
    # sklearn's average_precision_score does. Ties are rare for real embeddings but not absent
    # (duplicate notes embed identically), so the scan that resolves them runs only when needed.
    position = jnp.arange(rel.shape[1], dtype=jnp.int32)
    tied_with_next = sim_key[:, 1:] == sim_key[:, :-1]

    def precision_sum(hits_at_end, rank_at_end):
        precision = hits_at_end.astype(jnp.float32) / rank_at_end.astype(jnp.float32)
        return jnp.sum(jnp.where(rel > 0, precision, 0.0), axis=1)

    def untied(_):
        return precision_sum(hits, position[None, :] + 1)

    def tied(_):
        block_end = jnp.concatenate([~tied_with_next, jnp.ones((rel.shape[0], 1), bool)], axis=1)
        # Both the position and the hit count never decrease along the sorted list, so the first
        # block end at or after j has the smallest (position, hits) pair of all later block ends;
        # packing the pair into one int64 lets a single reverse running minimum find both.
        pair = (position[None, :].astype(jnp.int64) << 32) | hits.astype(jnp.int64)
        pair = jnp.where(block_end, pair, jnp.iinfo(jnp.int64).max)
        pair = jax.lax.cummin(pair, axis=1, reverse=True)
        return precision_sum(pair & 0xFFFFFFFF, (pair >> 32) + 1)

    any_tie = jnp.any(tied_with_next & (sim_key[:, 1:] != jnp.uint32(_PADDING_KEY)))
    return jax.lax.cond(any_tie, tied, untied, None)


@functools.partial(jax.jit, static_argnames=("chunk", "ks"))
def _class_retrieval_chunk(q_all, ql_all, qv_all, start, gallery, g_labels, g_valid, *, chunk: int, ks: tuple):
    # Must be called under jax.enable_x64(True), for the packed uint64 sort keys.
    queries = jax.lax.dynamic_slice_in_dim(q_all, start, chunk)
    q_labels = jax.lax.dynamic_slice_in_dim(ql_all, start, chunk)
    q_valid = jax.lax.dynamic_slice_in_dim(qv_all, start, chunk)
    n_gallery = gallery.shape[0]

    sims = _similarities(queries, gallery)
    relevant = (q_labels[:, None] == g_labels[None, :]) & g_valid[None, :]
    rel, sim_key = _sorted_relevance(sims, relevant, g_valid)
    hits = jnp.cumsum(rel, axis=1, dtype=jnp.int32)
    n_relevant = hits[:, -1]
    ap = _tie_aware_precision_sum(rel, sim_key, hits) / jnp.maximum(n_relevant, 1).astype(jnp.float32)

    scored = q_valid & (n_relevant > 0)
    hits_at_k = jnp.stack([hits[:, min(k, n_gallery) - 1] for k in ks], axis=0)
    return {
        "n": jnp.sum(scored, dtype=jnp.int32),
        "hits_at_k": jnp.sum(jnp.where(scored[None, :], hits_at_k, 0), axis=1, dtype=jnp.int32),
        "any_at_k": jnp.sum(scored[None, :] & (hits_at_k > 0), axis=1, dtype=jnp.int32),
        "ap": jnp.sum(jnp.where(scored, ap, 0.0)),
    }


@functools.partial(jax.jit, static_argnames=("chunk", "ks"))
def _pair_retrieval_chunk(q_all, qv_all, start, gallery, g_valid, *, chunk: int, ks: tuple):
    queries = jax.lax.dynamic_slice_in_dim(q_all, start, chunk)
    q_valid = jax.lax.dynamic_slice_in_dim(qv_all, start, chunk)
    n_gallery = gallery.shape[0]

    sims = _similarities(queries, gallery)
    own = start + jnp.arange(chunk, dtype=jnp.int32)
    # Padded query rows point past the gallery; clamp for the gather, they are masked below.
    own_clamped = jnp.minimum(own, n_gallery - 1)
    own_sim = jnp.take_along_axis(sims, own_clamped[:, None], axis=1)
    position = jnp.arange(n_gallery, dtype=jnp.int32)
    # Rank under the same tie-breaking as the class-matching top-k lists: equal similarities are
    # ordered by gallery index.
    ahead = (sims > own_sim) | ((sims == own_sim) & (position[None, :] < own_clamped[:, None]))
    rank = 1 + jnp.sum(ahead & g_valid[None, :], axis=1, dtype=jnp.int32)

    scored = q_valid & (own < n_gallery) & g_valid[own_clamped]
    within = jnp.stack([rank <= k for k in ks], axis=0)
    return {
        "n": jnp.sum(scored, dtype=jnp.int32),
        "any_at_k": jnp.sum(scored[None, :] & within, axis=1, dtype=jnp.int32),
        "rr": jnp.sum(jnp.where(scored, 1.0 / rank.astype(jnp.float32), 0.0)),
    }


@functools.partial(jax.jit, static_argnames=("padded",))
def _pad_rows(x, padded: int):
    return jnp.pad(x, [(0, padded - x.shape[0])] + [(0, 0)] * (x.ndim - 1))


def _class_labels(query_labels, gallery_labels, n_query: int, n_gallery: int):
    """Both label arrays as int32, checked against the numbers of embeddings."""
    if query_labels is None or gallery_labels is None:
        raise ValueError("class-matching retrieval needs query_labels and gallery_labels")
    query_labels = jnp.asarray(query_labels).astype(jnp.int32)
    gallery_labels = jnp.asarray(gallery_labels).astype(jnp.int32)
    if query_labels.shape != (n_query,) or gallery_labels.shape != (n_gallery,):
        raise ValueError("label arrays must match the number of embeddings")
    return query_labels, gallery_labels


def _chunked_totals(query_emb, query_labels, q_valid, gallery_emb, gallery_labels, g_valid,
                    *, ks: tuple, chunk_size: int, pairs: bool) -> dict:
    """The per-chunk sums of `_pair_retrieval_chunk` or `_class_retrieval_chunk` over all queries."""
    n_query = query_emb.shape[0]
    chunk = min(chunk_size, n_query)
    padded = -(-n_query // chunk) * chunk
    # One padded copy of the queries lets every chunk reuse the same compiled function.
    q_all = _pad_rows(query_emb, padded=padded)
    qv_all = _pad_rows(q_valid, padded=padded)
    if not pairs:
        ql_all = _pad_rows(query_labels, padded=padded)
    totals = None
    for start in range(0, padded, chunk):
        start_arr = jnp.int32(start)
        if pairs:
            part = _pair_retrieval_chunk(q_all, qv_all, start_arr, gallery_emb, g_valid, chunk=chunk, ks=ks)
        else:
            with jax.enable_x64(True):
                part = _class_retrieval_chunk(
                    q_all, ql_all, qv_all, start_arr, gallery_emb, gallery_labels, g_valid, chunk=chunk, ks=ks
                )
        totals = part if totals is None else jax.tree.map(jnp.add, totals, part)
    return jax.device_get(totals)


def _chunked_summary(totals: dict | None, ks: tuple, pairs: bool) -> dict:
    """`retrieval_metrics`'s result from the summed chunk statistics (None: no query or gallery)."""
    names = _pair_names(ks) if pairs else _class_names(ks)
    scored = 0 if totals is None else int(totals["n"])
    if scored == 0:
        return {"num_queries": 0, **{name: float("nan") for name in names}}
    if pairs:
        sums = [*totals["any_at_k"], totals["rr"]]
    else:
        sums = [*(h / k for h, k in zip(totals["hits_at_k"], ks)), *totals["any_at_k"], totals["ap"]]
    return {"num_queries": scored, **{name: float(v) / scored for name, v in zip(names, sums)}}


def retrieval_metrics(
    query_emb,
    gallery_emb,
    query_labels=None,
    gallery_labels=None,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 1024,
    query_valid=None,
    gallery_valid=None,
    pairs: bool = False,
) -> dict:
    """Retrieval of `gallery_emb[Ng, D]` items for `query_emb[Nq, D]` by dot-product similarity.

    Class matching (default): a gallery item is relevant to a query iff their labels are equal.
    Returns "p_at_{k}" (relevant items in the top k, divided by k), "recall_at_{k}" (fraction of
    queries with a relevant item in the top k) and "map"; queries without any relevant valid
    gallery item are left out of all of them. "num_queries" counts the queries that were scored.

    Instance matching (`pairs=True`, Nq == Ng, labels unused): query i's only relevant item is
    gallery i. Returns "r_at_{k}" and "mrr" over valid queries whose own gallery item is valid.

    Queries are processed `chunk_size` at a time, so peak memory is O(chunk_size * Ng).
    Metrics are NaN when no query can be scored.
    """
    ks = _check_ks(ks)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    query_emb = jnp.asarray(query_emb)
    gallery_emb = jnp.asarray(gallery_emb)
    _check_embeddings(query_emb, gallery_emb)
    n_query, n_gallery = query_emb.shape[0], gallery_emb.shape[0]
    q_valid = row_mask(query_valid, n_query)
    g_valid = row_mask(gallery_valid, n_gallery)
    if pairs and n_query != n_gallery:
        raise ValueError(f"pairs=True needs as many queries as gallery items, got {n_query} and {n_gallery}")
    if not pairs:
        query_labels, gallery_labels = _class_labels(query_labels, gallery_labels, n_query, n_gallery)

    totals = None
    if n_query and n_gallery:
        totals = _chunked_totals(query_emb, query_labels, q_valid, gallery_emb, gallery_labels, g_valid,
                                 ks=ks, chunk_size=chunk_size, pairs=pairs)
    return _chunked_summary(totals, ks, pairs)


# ----------------------------------------------------------------------------------------------
# Retrieval at scale: one similarity pass per chunk of queries for every metric at once.
#
# A full sort of each similarity row is what made `retrieval_metrics` slow (XLA's CPU sort runs
# at ~18M keys/s). P@k and Recall@k need only the top k (lax.top_k). Average precision needs
# each relevant item's rank, but only through two counts, "relevant items at or above it" and
# "items at or above it": a histogram of the row over `map_bins` similarity bins gives both for
# every bin at once (one scatter-add and a suffix sum over the bins). Items in one bin count as
# tied, and a tie block takes the precision at its end, as average_precision_score does for
# equal scores; so exact ties are exact, and the only approximation is that similarities closer
# than (row max - row min) / map_bins are treated as ties. `map_bins=None` sorts instead (exact).


def _binned_precision_sum(sims, rel, g_valid, bins: int):
    """Per query row: sum over relevant items of precision at their tie block's end."""
    lo = jnp.min(jnp.where(g_valid[None, :], sims, jnp.inf), axis=1, keepdims=True)
    hi = jnp.max(jnp.where(g_valid[None, :], sims, -jnp.inf), axis=1, keepdims=True)
    scale = bins / jnp.maximum(hi - lo, jnp.finfo(jnp.float32).tiny)
    b = jnp.clip(((sims - lo) * scale).astype(jnp.int32), 0, bins - 1)
    # One scatter of packed counts (relevant ones in the high half) instead of two halves the
    # cost; int32 halves the table again when no count can reach 2^16.
    dtype, shift = (jnp.int32, 16) if sims.shape[1] < (1 << 16) else (jnp.int64, 32)
    weight = jnp.where(g_valid[None, :], (rel.astype(dtype) << shift) | 1, 0).astype(dtype)
    hist = jax.vmap(lambda bb, ww: jnp.zeros(bins, dtype).at[bb].add(ww))(b, weight)
    n_all = (hist & ((1 << shift) - 1)).astype(jnp.float32)
    n_rel = (hist >> shift).astype(jnp.float32)
    at_or_above_all, at_or_above_rel = _suffix_sums(jnp.stack([n_all, n_rel]))
    return jnp.sum(n_rel * at_or_above_rel / jnp.maximum(at_or_above_all, 1.0), axis=1)


def _suffix_sums(x, block: int = 128):
    """Inclusive suffix sums along the last axis. XLA's CPU cumsum is a slow serial loop; a
    matmul with a triangular matrix per block of 128 plus a short cumsum of block totals is
    several times faster. Counts stay exact: integers below 2^24 in float32."""
    n = x.shape[-1]
    if n % block:
        return jnp.cumsum(x[..., ::-1], axis=-1)[..., ::-1]
    blocks = x.reshape(x.shape[:-1] + (n // block, block))
    tri = jnp.tril(jnp.ones((block, block), jnp.float32))  # tri[i, j] = 1 for j <= i
    within = jnp.matmul(blocks, tri, precision=jax.lax.Precision.HIGHEST)  # sum over positions >= j
    totals = within[..., 0]
    later = jnp.cumsum(totals[..., ::-1], axis=-1)[..., ::-1] - totals
    return (within + later[..., None]).reshape(x.shape)


def _retrieval_rows(queries, q_labels, q_owner, q_valid, gallery, g_labels, g_owner, g_valid,
                    *, ks: tuple, bins: int | None, pairs: bool):
    """Per-query statistics for one block of queries against the whole gallery."""
    sims = _similarities(queries, gallery)
    n_gallery = gallery.shape[0]
    rel = (q_labels[:, None] == g_labels[None, :]) & g_valid[None, :]
    n_relevant = jnp.sum(rel, axis=1, dtype=jnp.int32)
    scored = q_valid & (n_relevant > 0)
    out = {"class_scored": scored}

    kmax = min(max(ks), n_gallery)
    # Gallery padding (any garbage, NaN included) can never enter a top-k list.
    masked = jnp.where(g_valid[None, :], sims, -jnp.inf)
    _, top = jax.lax.top_k(masked, kmax)
    top_rel = jnp.take_along_axis(rel, top, axis=1)
    hits = jnp.cumsum(top_rel, axis=1, dtype=jnp.int32)
    out["hits_at_k"] = jnp.stack([hits[:, min(k, kmax) - 1] for k in ks], axis=1)
    if bins is not None:
        ap = _binned_precision_sum(sims, rel, g_valid, bins) / jnp.maximum(n_relevant, 1)
        out["ap"] = jnp.where(scored, ap, 0.0)

    if pairs:
        # q_owner holds each query's own gallery indices (ascending, -1 padded): a gather instead
        # of two more passes over the whole row.
        idx = jnp.clip(q_owner, 0, n_gallery - 1)
        own = (q_owner >= 0) & g_valid[idx]
        own_sims = jnp.where(own, jnp.take_along_axis(sims, idx, axis=1), -jnp.inf)
        best = jnp.max(own_sims, axis=1, keepdims=True)
        # The own item that counts is the first (by gallery index) of the most similar ones, the
        # same tie-break as the top-k lists.
        best_index = jnp.min(jnp.where(own & (own_sims == best), idx, n_gallery), axis=1)
        position = jnp.arange(n_gallery, dtype=jnp.int32)
        ahead = (sims > best) | ((sims == best) & (position[None, :] < best_index[:, None]))
        out["pair_rank"] = 1 + jnp.sum(ahead & g_valid[None, :], axis=1, dtype=jnp.int32)
        out["pair_scored"] = q_valid & jnp.any(own, axis=1)
    return out


@functools.partial(jax.jit, static_argnames=("ks", "bins", "pairs", "out_sharding", "per_query"))
def _retrieval_step(queries, q_labels, q_owner, q_valid, gallery, g_labels, g_owner, g_valid,
                    *, ks, bins, pairs, out_sharding, per_query=False):
    rows = _retrieval_rows(queries, q_labels, q_owner, q_valid, gallery, g_labels, g_owner, g_valid,
                           ks=ks, bins=bins, pairs=pairs)
    # Sums over the (sharded) query rows: XLA reduces across devices and hosts, so every
    # process ends the step holding the same totals.
    c = rows["class_scored"]
    tot = {"class_n": jnp.sum(c, dtype=jnp.int32),
           "hits_at_k": jnp.sum(jnp.where(c[:, None], rows["hits_at_k"], 0), axis=0, dtype=jnp.int32),
           "any_at_k": jnp.sum(c[:, None] & (rows["hits_at_k"] > 0), axis=0, dtype=jnp.int32)}
    if bins is not None:
        tot["ap"] = jnp.sum(rows["ap"])
    if pairs:
        p = rows["pair_scored"]
        tot["pair_n"] = jnp.sum(p, dtype=jnp.int32)
        tot["pair_at_k"] = jnp.stack([jnp.sum(p & (rows["pair_rank"] <= k), dtype=jnp.int32) for k in ks])
        tot["rr"] = jnp.sum(jnp.where(p, 1.0 / rows["pair_rank"].astype(jnp.float32), 0.0))
    if per_query:  # for bootstrap intervals: the rows themselves, gathered like the totals
        tot["rows"] = {"scored": c, "hits_at_k": rows["hits_at_k"], "ap": rows["ap"]}
    return jax.lax.with_sharding_constraint(tot, out_sharding)


def _own_indices(query_owner: np.ndarray, gallery_owner: np.ndarray) -> np.ndarray:
    """[Nq, M] gallery indices whose owner is the query's, ascending, padded with -1."""
    order = np.argsort(gallery_owner, kind="stable")
    sorted_owner = gallery_owner[order]
    start = np.searchsorted(sorted_owner, query_owner, side="left")
    count = np.searchsorted(sorted_owner, query_owner, side="right") - start
    m = max(1, int(count.max(initial=0)))
    slot = start[:, None] + np.arange(m)[None, :]
    return np.where(np.arange(m)[None, :] < count[:, None], order[np.minimum(slot, len(order) - 1)], -1).astype(np.int32)


def _owner_inputs(query_owner, gallery_owner, n_query: int, n_gallery: int, pairs: bool):
    """(each query's own gallery indices [Nq, M], gallery owners [Ng]); without `pairs`, zero arrays
    of those shapes that the class-matching metrics never read."""
    if not pairs:
        return np.zeros((n_query, 1), np.int32), np.zeros(n_gallery, np.int32)
    qo, go = np.asarray(query_owner, np.int32), np.asarray(gallery_owner, np.int32)
    if qo.shape != (n_query,) or go.shape != (n_gallery,):
        raise ValueError("owner arrays must match the number of embeddings")
    return _own_indices(qo, go), go


def _sharded_totals(queries: tuple, gallery: tuple, mesh, *, chunk_size: int, ks: tuple, bins: int | None,
                    pairs: bool, per_query: bool):
    """`_retrieval_step`'s totals summed over every block of queries, and with `per_query` each
    block's rows. `queries` and `gallery` are host arrays (embeddings, labels, owners, valid)."""
    rows_sharding, rep = batch_sharding(mesh), replicated(mesh)
    n_shards = math.prod(mesh.shape[a] for a in rows_sharding.spec[0])
    n_query = len(queries[0])
    step_rows = min(chunk_size, -(-n_query // n_shards)) * n_shards
    steps = -(-n_query // step_rows)

    def put(x, sharding):
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    gallery = [put(x, rep) for x in gallery]

    def block(x, s):  # only the last block is padded: no padded copy of all queries
        x = x[s * step_rows:(s + 1) * step_rows]
        return put(np.concatenate([x, np.zeros((step_rows - len(x),) + x.shape[1:], x.dtype)])
                   if len(x) < step_rows else x, rows_sharding)

    totals, rows = None, []
    with jax.enable_x64(True):  # the packed int64 histogram counts
        for s in range(steps):
            part = _retrieval_step(*(block(x, s) for x in queries), *gallery, ks=ks, bins=bins,
                                   pairs=pairs, out_sharding=rep, per_query=per_query)
            if per_query:
                rows.append(jax.device_get(part.pop("rows")))
            totals = part if totals is None else jax.tree.map(jnp.add, totals, part)
        totals = jax.device_get(totals)
    return totals, rows


def _class_summary(totals: dict, ks: tuple, exact_map) -> dict:
    """P@k, Recall@k and mAP of the scored class-matching queries; mAP from the binned sums, or
    `exact_map()` when it is given."""
    n = int(totals["class_n"])
    out = {"num_queries": n}
    if n:
        out.update({f"p_at_{k}": float(h) / k / n for k, h in zip(ks, totals["hits_at_k"])})
        out.update({f"recall_at_{k}": float(a) / n for k, a in zip(ks, totals["any_at_k"])})
        out["map"] = float(totals["ap"]) / n if exact_map is None else exact_map()
    else:
        out.update({name: float("nan") for name in _class_names(ks)})
    return out


def _pair_summary(totals: dict, ks: tuple) -> dict:
    """R@k and MRR of the queries that have an own gallery item."""
    names = _pair_names(ks)
    m = int(totals["pair_n"])
    vals = [*totals["pair_at_k"], totals["rr"]] if m else [float("nan")] * len(names)
    return {"num_pair_queries": m, **{name: float(v) / m if m else float("nan") for name, v in zip(names, vals)}}


def _per_query_stats(rows: list, n_query: int, ks: tuple) -> dict:
    """The gathered per-query rows of every step, padding dropped, for `bootstrap_means`."""
    cat = lambda k: np.concatenate([r[k] for r in rows])[:n_query]
    return {"scored": cat("scored"), "ap": cat("ap").astype(np.float32),
            "precision_at_k": cat("hits_at_k").astype(np.float32) / np.asarray(ks, np.float32)}


def retrieval(query_emb, gallery_emb, query_labels, gallery_labels, query_owner=None,
              gallery_owner=None, ks: Sequence[int] = (1, 5, 10), chunk_size: int = 256,
              map_bins: int | None = 1 << 16, mesh=None, per_query: bool = False) -> dict:
    """Class-matching and exact-pair retrieval of `gallery_emb` items for `query_emb` queries.

    Class matching: a gallery item is relevant when its label equals the query's. Returns
    "p_at_{k}", "recall_at_{k}" (a relevant item in the top k) and "map", over queries with at
    least one relevant item ("num_queries"). `map_bins`: see the section comment above; None
    computes mAP exactly by sorting (`retrieval_metrics`), slower for large galleries.
    Exact pairs (when owners are given): gallery items whose owner equals the query's owner
    are its own (an image's notes, a note's image); "r_at_{k}" is the fraction of queries with
    an own item in the top k, "mrr" the mean reciprocal rank of the best own item.

    Inputs are host numpy arrays, the same on every process. Queries are padded to a whole
    number of steps of `chunk_size` rows per device, sharded over the mesh's batch axes (all
    devices of all hosts) with a validity mask, so every process runs the same steps; the
    gallery is replicated. No host ever holds a queries x gallery matrix.

    per_query: also "per_query": {"scored" [Nq] bool, "precision_at_k" [Nq, len(ks)], "ap" [Nq]}
    for the class-matching queries (AP binned as above even when `map_bins` is None), from
    which `bootstrap_means` draws intervals.
    """
    ks = _check_ks(ks)
    q = np.asarray(query_emb, np.float32)
    g = np.asarray(gallery_emb, np.float32)
    _check_embeddings(q, g)
    nq, ng = len(q), len(g)
    ql, gl = np.asarray(query_labels, np.int32), np.asarray(gallery_labels, np.int32)
    if ql.shape != (nq,) or gl.shape != (ng,):
        raise ValueError("label arrays must match the number of embeddings")
    pairs = query_owner is not None or gallery_owner is not None
    qo, go = _owner_inputs(query_owner, gallery_owner, nq, ng, pairs)
    if map_bins is not None:  # no finer than the gallery needs: the bins cost per query row
        map_bins = int(min(map_bins, max(128, 1 << (16 * max(ng, 1) - 1).bit_length())))
    if nq == 0 or ng == 0:
        out = {"num_queries": 0, **{n: float("nan") for n in _class_names(ks)}}
        return out | ({"num_pair_queries": 0, **{n: float("nan") for n in _pair_names(ks)}} if pairs else {})

    if mesh is None:
        mesh = make_mesh({"data": -1})
    bins = map_bins if map_bins is not None or not per_query else 1 << 16
    totals, rows = _sharded_totals((q, ql, qo, np.ones(nq, bool)), (g, gl, go, np.ones(ng, bool)), mesh,
                                   chunk_size=chunk_size, ks=ks, bins=bins, pairs=pairs, per_query=per_query)
    exact_map = None if map_bins is not None else (
        lambda: retrieval_metrics(q, g, ql, gl, ks=ks, chunk_size=max(1, min(chunk_size, 1024)))["map"])
    out = _class_summary(totals, ks, exact_map)
    if pairs:
        out.update(_pair_summary(totals, ks))
    if per_query:
        out["per_query"] = _per_query_stats(rows, nq, ks)
    return out
