#!/usr/bin/env python3
# Writes the FP8 reference tables test/runtime/fp8-tables.test.ts checks the TypeScript codec against,
# from PyTorch's casts (torch.float8_e4m3fn / torch.float8_e5m2, which are NON-saturating).
# Run on a host with PyTorch >= 2.1 and numpy, from the project root: python3 scripts/fp8-tables.py
"""
Files written to test/data/fp8/ (all little-endian):
  decode-{e4m3,e5m2}.bin            256 f32: code c cast to float32
  encode-f16-{fmt}.bin              65,536 u8 codes; input i = the binary16 with bits i, widened to f32
  encode-random-{fmt}.bin           1,000,000 u8 codes of the seeded random f32 inputs (below)
  encode-{f16,random}-{fmt}-sat.bin the same inputs clamped to +-max first (NaN left alone): the
                                    saturating ("satfinite", TE) cast, built from PyTorch's cast
  manifest.json                     versions, seed, count, and sha256 of both input sets (the TS test
                                    checks them first, so a generator mismatch is reported as such)

The inputs are defined bit for bit in test/helpers/fp8-inputs.ts; this file mirrors it:
  binary16 inputs: bits h -> sign<<31 | exponent (e+112)<<23 | mantissa<<13; e = 31 -> 0x7f800000 |
  mantissa<<13 (inf/NaN, payload kept); e = 0 -> the f32 of m * 2^-24.
  random inputs: xorshift32 from SEED (s ^= s<<13; s ^= s>>17; s ^= s<<5, mod 2^32); per input
  u = next(), v = next(), kind = u & 7, see random_input_bits().
Casts run on the CPU (the c10 Float8 conversions; CUDA uses the same code).
"""
import hashlib
import json
import os
import struct
import sys

import numpy as np
import torch

SEED = 0x2545F491
COUNT = 1_000_000
NEAR_MAX = [0x43E00000, 0x43E80000, 0x43F00000, 0x43D00000, 0x47600000, 0x47700000, 0x47800000, 0x47500000]
SPECIALS = [
    0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001, 0x00000001, 0x80000001,
    0x7F7FFFFF, 0xFF7FFFFF, 0x3A800000, 0x37000000, 0x3AC00000, 0x43E80000, 0xC7700000,
]
FORMATS = {"e4m3": (torch.float8_e4m3fn, 448.0), "e5m2": (torch.float8_e5m2, 57344.0)}
M32 = 0xFFFFFFFF


def f32_bits(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


def random_input_bits(count: int = COUNT, seed: int = SEED) -> np.ndarray:
    out = np.empty(count, dtype=np.uint32)
    s = seed & M32
    for i in range(count):
        s ^= (s << 13) & M32
        s ^= s >> 17
        s ^= (s << 5) & M32
        u = s
        s ^= (s << 13) & M32
        s ^= s >> 17
        s ^= (s << 5) & M32
        v = s
        kind = u & 7
        exp = (103 + ((u >> 3) & 63)) << 23
        if kind <= 1:  # raw bits
            bits = v
        elif kind <= 3:  # wide range 2^-24 .. 2^39
            bits = (v & 0x807FFFFF) | exp
        elif kind == 4:  # a 4-bit mantissa, then 0 / +1 / -1 / 0 f32 ulp
            bits = ((v & 0x80000000) | exp | (v & 0x00780000)) + (0, 1, -1, 0)[(u >> 9) & 3]
        elif kind == 5:  # around the formats' max
            bits = (v & 0x80000000) | (NEAR_MAX[(u >> 3) & 7] + ((u >> 6) & 7) - 3)
        elif kind == 6:  # scaled Irwin-Hall, exact in f32
            t = (v & 0xFFF) + ((v >> 12) & 0xFFF) + ((u >> 3) & 0xFFF) - 6142
            bits = f32_bits(t * 2.0 ** (((u >> 15) & 31) - 24))
        else:
            bits = SPECIALS[v & 15]
        out[i] = bits & M32
    return out


def f16_input_bits() -> np.ndarray:
    h = np.arange(65536, dtype=np.uint32)
    sign = (h & 0x8000) << 16
    e = (h >> 10) & 31
    m = h & 0x3FF
    normal = sign | ((e + 112) << 23) | (m << 13)
    special = sign | 0x7F800000 | (m << 13)
    sub = (m.astype(np.float32) * np.float32(2.0**-24)).view(np.uint32) | sign
    return np.where(e == 31, special, np.where(e == 0, sub, normal)).astype(np.uint32)


def cast(bits: np.ndarray, fmt: str, saturate: bool) -> np.ndarray:
    dtype, fmax = FORMATS[fmt]
    x = torch.from_numpy(bits.view(np.float32).copy())
    if saturate:  # clamp before the cast; torch.where keeps NaN bits (clamp may not keep the sign)
        x = torch.where(torch.isnan(x), x, x.clamp(-fmax, fmax))
    return x.to(dtype).view(torch.uint8).numpy()


def main() -> None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = os.path.join(root, "test", "data", "fp8") if len(sys.argv) < 2 else sys.argv[1]
    os.makedirs(out, exist_ok=True)
    inputs = {"f16": f16_input_bits(), "random": random_input_bits()}
    manifest = {
        "generator": "scripts/fp8-tables.py",
        "torch": torch.__version__,
        "numpy": np.__version__,
        "seed": SEED,
        "count": COUNT,
        "inputs_sha256": {k: hashlib.sha256(v.astype("<u4").tobytes()).hexdigest() for k, v in inputs.items()},
        "nan_codes": {},
    }
    for fmt, (dtype, _) in FORMATS.items():
        dec = torch.arange(256, dtype=torch.int32).to(torch.uint8).view(dtype).to(torch.float32).numpy()
        dec.astype("<f4").tofile(os.path.join(out, f"decode-{fmt}.bin"))
        for name, bits in inputs.items():
            cast(bits, fmt, False).tofile(os.path.join(out, f"encode-{name}-{fmt}.bin"))
            cast(bits, fmt, True).tofile(os.path.join(out, f"encode-{name}-{fmt}-sat.bin"))
        nan_in = np.array([0x7FC00000, 0xFFC00000], dtype=np.uint32)
        manifest["nan_codes"][fmt] = [int(c) for c in cast(nan_in, fmt, False)]
    try:  # ml_dtypes, when present, for the record (it is not what the tables hold)
        import ml_dtypes

        mld = {"e4m3": ml_dtypes.float8_e4m3fn, "e5m2": ml_dtypes.float8_e5m2}
        manifest["ml_dtypes"] = ml_dtypes.__version__
        manifest["ml_dtypes_mismatches"] = {
            f"{name}-{fmt}": int(np.count_nonzero(bits.view(np.float32).astype(mld[fmt]).view(np.uint8) != cast(bits, fmt, False)))
            for fmt in FORMATS
            for name, bits in inputs.items()
        }
    except ImportError:
        pass
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"wrote {out}: {json.dumps(manifest)}")


if __name__ == "__main__":
    main()
