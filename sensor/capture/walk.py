"""Walk a chain of length-prefixed records (pcap records, pcapng blocks) in many lanes at once.

Theory of operation: finding where each record starts is the one inherently
sequential step of reading a capture (record k+1 starts where record k's
length says). A Python loop over records costs about a microsecond each, so
instead the buffer is cut into segments and a *lane* starts in each segment
at the first position that looks like a record header (the format supplies
the plausibility test). All lanes then step together in numpy: each step is
one gather of the length field for every lane. Finally the lanes are checked
in file order: lane i+1 is right exactly when the true chain, followed to the
end of lane i, lands on lane i+1's start. A lane that began on a false header
(a header-like pattern inside a payload) is walked again from the true
position, so the result is exact whatever the payloads hold; only the cost
of such a redo is sequential.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["ChainFormat", "WalkResult", "lane_grid", "walk_chain"]

I64 = npt.NDArray[np.int64]
#: where lanes start: ``first + i * stride`` for i < lanes (an int), or these positions (an array)
Lanes = int | I64

#: bytes between lane seeds; each lane walks about this many bytes
SEGMENT = 8192
#: how far into each segment a lane looks for a plausible header. The test costs per byte
#: looked at; a segment with no seed is walked by the lane before it. 128 bytes seeds
#: nearly every lane of small-packet (telescope) traffic: on 2 M such packets it walks
#: 12-15 % faster than 256, and files of 300-1400 byte packets walk as fast either way.
SEED_WINDOW = 128
#: a segment with no seed in its first SEED_WINDOW bytes (a large record lies across them)
#: is looked at again this far, when such segments are few: otherwise the lane before it
#: walks two segments, and the whole walk takes twice the steps
SEED_WINDOW_2 = 512


def lane_grid(u32: npt.NDArray[np.uint32], first: Lanes, stride: int, lanes: int, width: int,
              off: int) -> npt.NDArray[np.uint32]:
    """``u32`` at ``width`` consecutive positions (+ ``off``) of every lane: (lanes, width).

    Evenly spaced lanes are a strided view (no copy); others a gather.
    """
    if isinstance(first, int):
        return np.lib.stride_tricks.as_strided(u32[first + off:], shape=(lanes, width), strides=(stride, 1),
                                               writeable=False)
    return u32[(first + off)[:, None] + np.arange(width)]


def lane_start(first: Lanes, stride: int, li: npt.NDArray[np.intp]) -> I64:
    """Where lanes ``li`` start (as :func:`lane_grid` lays them out)."""
    if isinstance(first, int):
        return first + li.astype(np.int64) * stride
    return first[li]


@dataclass(frozen=True, slots=True)
class ChainFormat:
    """How to step from one record to the next.

    The record at ``p`` holds a uint32 ``n`` at ``p + len_off`` (read through
    ``len32``, a byte-strided view in the file's byte order); the next record
    starts at ``p + base + n``. A record needs ``need`` bytes before its
    length can be trusted; ``n`` must lie in ``[min_len, max_len]`` and, when
    ``align4``, be a multiple of 4.
    """

    len32: npt.NDArray[np.uint32]
    len_off: int
    base: int
    need: int
    min_len: int
    max_len: int
    align4: bool
    #: plausible(first, stride, lanes, width) -> bool (lanes, width): header-like positions
    #: (lanes laid out as :func:`lane_grid` does)
    plausible: Callable[[Lanes, int, int, int], npt.NDArray[np.bool_]]


@dataclass(frozen=True, slots=True)
class WalkResult:
    """Record starts in ``[start, stop)``; ``stop`` is where the chain ended.

    ``bad`` is True when the record at ``stop`` had its header in the buffer
    but an impossible length (as opposed to simply running out of data).
    ``redone`` counts lanes that started on a false header.
    """

    starts: I64
    stop: int
    bad: bool
    redone: int


def _step(fmt: ChainFormat, p: I64, n: npt.NDArray[np.uint32], nxt: I64,
          end: int) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """ok (a whole valid record at p), badlen (header there, impossible length), given the
    length field ``n`` read at ``p`` and the next position ``nxt`` it gives."""
    hdr = p + fmt.need <= end
    good = (n >= fmt.min_len) & (n <= fmt.max_len)
    if fmt.align4:
        good &= (n & 3) == 0
    badlen = hdr & ~good
    ok = hdr & good & (nxt <= end)
    return ok, badlen


def _walk_one(fmt: ChainFormat, p: int, bound: int, end: int) -> tuple[list[int], int, bool, bool]:
    """Sequential walk of one lane: (starts, end position, reached bound, bad length)."""
    out: list[int] = []
    len32 = fmt.len32
    while True:
        if p + fmt.need > end:
            return out, p, False, False
        n = int(len32[p + fmt.len_off])
        if n < fmt.min_len or n > fmt.max_len or (fmt.align4 and n & 3):
            return out, p, False, True
        nxt = p + fmt.base + n
        if nxt > end:
            return out, p, False, False
        out.append(p)
        p = nxt
        if p >= bound:
            return out, p, True, False


def walk_chain(fmt: ChainFormat, start: int, end: int) -> WalkResult:
    """All record starts from ``start`` (a true record start) while whole records fit before ``end``."""
    span = end - start
    # rounded to the nearest: the last lane walks 0.5 to 1.5 segments (rounding down let a chunk
    # of exactly 2^k segments, less the file header, give its last lane two segments to walk,
    # and the walk takes as many steps as its longest lane has records)
    lanes = max(1, (span + SEGMENT // 2) // SEGMENT)
    if lanes > 1:
        width = min(SEED_WINDOW, SEGMENT)
        first = start + SEGMENT
        m = fmt.plausible(first, SEGMENT, lanes - 1, width)
        has = np.asarray(m.any(axis=1))
        seeds = first + np.arange(lanes - 1, dtype=np.int64) * SEGMENT + m.argmax(axis=1)
        again = np.flatnonzero(~has)
        if again.size and again.size * 8 <= lanes and width < SEED_WINDOW_2:
            m2 = fmt.plausible(seeds[again] + width, 0, again.size, SEED_WINDOW_2 - width)
            found = m2.any(axis=1)
            seeds[again] += width + m2.argmax(axis=1)
            has[again] = found
        c = np.concatenate(([start], seeds[has])).astype(np.int64)
        c = c[c < end]
    else:
        c = np.array([start], dtype=np.int64)
    L = c.size
    bound = np.append(c[1:], end).astype(np.int64)
    e = c.copy()  # where each lane ended
    reached = np.zeros(L, dtype=bool)
    bad = np.zeros(L, dtype=bool)
    act = np.arange(L, dtype=np.int64)
    p = c.copy()
    lane_bound = bound
    rec_lanes: list[I64] = []  # per step: the lanes that had a record there ...
    rec_pos: list[I64] = []  # ... and where
    full = 0  # the first steps, while every lane has a record, need no scatter into the grid
    # the length fields, indexed by record start (a view: no add per step)
    lens = fmt.len32[fmt.len_off:]
    # a record that ends before its lane's bound is shorter than max_len when no lane is longer
    check_max = int((bound - c).max()) > fmt.max_len + fmt.base
    while act.size:
        # usual step: every active lane has a whole, valid record -- a handful of numpy calls
        n = lens[p]
        nxt = p + n
        nxt += fmt.base
        quick = nxt < lane_bound
        if check_max:
            quick &= n <= fmt.max_len
        if fmt.min_len:
            quick &= n >= fmt.min_len
        if fmt.align4:
            quick &= (n & 3) == 0
        if quick.all():
            if full == len(rec_pos) and act.size == L:
                full += 1
            rec_lanes.append(act)
            rec_pos.append(p)
            p = nxt
            continue
        ok, badlen = _step(fmt, p, n, nxt, end)
        rec_lanes.append(act[ok])
        rec_pos.append(p[ok])
        stopped = ~ok
        if stopped.any():
            sl = act[stopped]
            e[sl] = p[stopped]
            bad[sl] = badlen[stopped]
        go = ok & (nxt < lane_bound)
        done = ok & ~go
        if done.any():
            dl = act[done]
            e[dl] = nxt[done]
            reached[dl] = True
        act, p, lane_bound = act[go], nxt[go], lane_bound[go]
    # record starts by step and lane, then read lane by lane (file order)
    grid_t = np.empty((len(rec_pos), L), dtype=np.int64)
    if full:
        np.stack(rec_pos[:full], out=grid_t[:full])
    grid_t[full:] = -1
    for k in range(full, len(rec_pos)):
        grid_t[k, rec_lanes[k]] = rec_pos[k]
    grid = grid_t.T

    match = reached[:-1] & (e[:-1] == c[1:])
    mism = np.flatnonzero(~match)
    valid = np.ones(L, dtype=bool)
    redo: dict[int, list[int]] = {}
    i = 0
    cur_end, cur_reached, cur_bad = int(e[0]), bool(reached[0]), bool(bad[0])
    while True:
        if i == L - 1:
            break
        if not cur_reached:
            valid[i + 1:] = False
            break
        if cur_end == c[i + 1]:
            k = int(np.searchsorted(mism, i + 1))
            j = int(mism[k]) if k < mism.size else L - 1
            i = j
            cur_end, cur_reached, cur_bad = int(e[j]), bool(reached[j]), bool(bad[j])
            continue
        valid[i + 1] = False
        got, cur_end, cur_reached, cur_bad = _walk_one(fmt, cur_end, int(bound[i + 1]), end)
        redo[i + 1] = got
        i += 1
    if redo:
        # lanes in file order, the redone ones from their sequential walk
        pieces: list[I64] = []
        prev = 0
        for lane, got in redo.items():
            part = grid[prev:lane][valid[prev:lane]].ravel()
            pieces += [part[part >= 0], np.asarray(got, dtype=np.int64)]
            prev = lane + 1
        part = grid[prev:][valid[prev:]].ravel()
        pieces.append(part[part >= 0])
        starts = np.concatenate(pieces)
    else:
        flat = grid.ravel() if valid.all() else grid[valid].ravel()
        starts = flat[flat >= 0]
    return WalkResult(starts=starts, stop=cur_end, bad=cur_bad, redone=len(redo))
