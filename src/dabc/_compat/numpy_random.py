"""Re-keying one PCG64 generator to the streams ``SeedSequence(seed, spawn_key=(t, k, b))``.

A vectorized model's block ``b`` of generation ``t`` draws from
``Generator(PCG64(SeedSequence(seed, spawn_key=(t, k, b))))`` (:mod:`dabc.engine.work`).
Building that costs about 20 us, a sixth of a block of 256 evaluations of a fast model. The
streams of one generation share ``seed``, ``t`` and ``k``, so :class:`BlockStreams` mixes them
once (``SeedSequence(seed, spawn_key=(t, k)).pool``), then per block mixes in only ``b``,
derives PCG64's state and sets it on one generator: about 6 us, and the same stream.

Relies on (numpy 1.17 to 2.x, checked with 2.4):

- the SeedSequence algorithm: a pool of 4 uint32 words; a spawn-key word ``w`` beyond the
  first four entropy words enters as ``pool[i] = mix(pool[i], hashmix(w))`` for each ``i``;
  ``generate_state`` hashes the pool cyclically with its own constant; the run entropy is
  padded to 4 words when there is a spawn key;
- PCG64 seeded from ``generate_state(4, uint64)`` as ``pcg64_set_seed`` does (state and
  increment from the high and low words, then the two steps of ``pcg_setseq_128_srandom``);
- the ``bit_generator.state`` dict of PCG64.

numpy documents these streams as stable across versions. Each process compares the first
re-keyed stream with numpy's own; if they differ, :class:`BlockStreams` builds every stream
with numpy (the same streams, at the old cost) and logs it once.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

_log = logging.getLogger("dabc")

_M32, _M128 = 0xFFFFFFFF, (1 << 128) - 1
_INIT_A, _MULT_A, _INIT_B, _MULT_B = 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R = 0xCA01F9DD, 0x4973F715
_PCG_MULT = (2549297995355413924 << 64) + 4865540595714422341
_verified: bool | None = None  # None: not compared yet in this process
_PARENTS: dict[tuple[int, int, int], tuple[list[int], list[tuple[int, int]]]] = {}
_thread = threading.local()  # .rng: this thread's re-keyed generator


def _hashes(init: int, mult: int, skip: int, n: int) -> list[tuple[int, int]]:
    """The (xor, multiplier) pairs of ``n`` successive hashmix calls after ``skip`` of them:
    hashmix(value) is ``((value ^ c) * (c * mult)) ^ shift``, then ``c *= mult``."""
    c = (init * pow(mult, skip, 1 << 32)) & _M32
    out = []
    for _ in range(n):
        nxt = (c * mult) & _M32
        out.append((c, nxt))
        c = nxt
    return out


def _words(n: int) -> int:
    """How many uint32 words numpy's SeedSequence makes of the integer ``n >= 0``."""
    return max(1, -(-n.bit_length() // 32))


_STATE_HASHES = _hashes(_INIT_B, _MULT_B, 0, 8)  # generate_state's: fixed


def numpy_stream(seed: int, *key: int) -> np.random.Generator:
    """numpy's own ``Generator(PCG64(SeedSequence(seed, spawn_key=key)))``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


class BlockStreams:
    """The streams ``SeedSequence(seed, spawn_key=(t, kind, b))`` for one ``(seed, t,
    kind)``, as one generator per thread, re-keyed for each block.

    Parameters
    ----------
    seed : int
        The run's seed (``>= 0``).
    t, kind : int
        The first two spawn-key words.
    """

    def __init__(self, seed: int, t: int, kind: int):
        self.seed, self.t, self.kind = int(seed), int(t), int(kind)
        self._fast = (_verified is not False and self.seed >= 0
                      and 0 <= self.t <= _M32 and 0 <= self.kind <= _M32)
        if self._fast:
            self._pool, self._mix_hashes = _parent(self.seed, self.t, self.kind)

    def _state(self, b: int) -> dict:
        """PCG64's state for the stream of block ``b``."""
        p0, p1, p2, p3 = self._pool
        (x0, m0), (x1, m1), (x2, m2), (x3, m3) = self._mix_hashes
        # mix in the word b, as a spawn-key word beyond the pool: pool[i] = mix(pool[i],
        # hashmix(b)), the hashmix constants (x: xor, m: multiplier) fixed by the position
        out = []
        for p, x, m in ((p0, x0, m0), (p1, x1, m1), (p2, x2, m2), (p3, x3, m3)):
            v = ((b ^ x) * m) & _M32
            r = (_MIX_L * p - _MIX_R * (v ^ (v >> 16))) & _M32
            out.append(r ^ (r >> 16))
        words = []  # generate_state(4, uint64): 8 words, hashing the pool cyclically
        for i, (x, m) in enumerate(_STATE_HASHES):
            d = ((out[i & 3] ^ x) * m) & _M32
            words.append(d ^ (d >> 16))
        w0, w1, w2, w3, w4, w5, w6, w7 = words
        init_state = (((w1 << 32) | w0) << 64) | (w3 << 32) | w2
        inc = ((((((w5 << 32) | w4) << 64) | (w7 << 32) | w6) << 1) | 1) & _M128
        state = (((inc + init_state) & _M128) * _PCG_MULT + inc) & _M128  # the two steps
        return {"bit_generator": "PCG64", "state": {"state": state, "inc": inc},
                "has_uint32": 0, "uinteger": 0}

    def at(self, b: int) -> np.random.Generator:
        """The stream of block ``b``, from its start: this thread's generator, re-keyed (a
        model must not keep it beyond its call)."""
        global _verified
        b = int(b)
        if not self._fast or not 0 <= b <= _M32:
            return numpy_stream(self.seed, self.t, self.kind, b)
        rng = getattr(_thread, "rng", None)
        if rng is None or _verified is None:
            rng = _thread.rng = numpy_stream(self.seed, self.t, self.kind, b)
            if _verified is None:
                _verified = self._state(b)["state"] == rng.bit_generator.state["state"]
                if not _verified:
                    _log.info("dabc: this numpy seeds PCG64 otherwise than dabc expects; "
                              "building every block stream with numpy")
                    self._fast = False
            return rng
        rng.bit_generator.state = self._state(b)
        return rng


def _parent(seed: int, t: int, kind: int) -> tuple[list[int], list[tuple[int, int]]]:
    """The pool of ``SeedSequence(seed, spawn_key=(t, kind))`` and the hashmix constants of
    the next word, remembered for the latest few ``(seed, t, kind)``."""
    key = (seed, t, kind)
    hit = _PARENTS.get(key)
    if hit is None:
        if len(_PARENTS) >= 8:
            _PARENTS.clear()
        pool = [int(x) for x in np.random.SeedSequence(seed, spawn_key=(t, kind)).pool]
        # hashmix calls so far: 4 filling the pool, 12 mixing it, 4 per further word (the
        # run entropy is padded to 4 words, then come the 2 of the spawn key)
        words = max(_words(seed), 4) + 2
        hit = _PARENTS[key] = (pool, _hashes(_INIT_A, _MULT_A, 16 + 4 * (words - 4), 4))
    return hit

