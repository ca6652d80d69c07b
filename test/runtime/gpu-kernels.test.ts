// runtime/gpu-kernels.ts absmaxBits against the host's max |x|: f32 and packed bf16 inputs (the
// bf16 one feeds GemmConfig.preScale), an odd bf16 count (a half-empty last word), a max that is
// negative, and an amax word that already holds a larger value (the kernel only raises it).
import { describe, expect, it } from "vitest";
import { absmaxBits } from "../../runtime/gpu-kernels.js";
import { decodeBF16, encodeBF16 } from "../../runtime/fp8.js";
import { getGpu, SKIP_GPU } from "../helpers/gpu.js";
import { rng, run } from "../kernels/harness.js";

const bitsOf = (x: number): number => new Uint32Array(Float32Array.of(x).buffer)[0];
const packBf16 = (codes: Uint16Array): Uint32Array => {
  const words = new Uint32Array(Math.ceil(codes.length / 2));
  codes.forEach((c, i) => (words[i >> 1] |= c << ((i & 1) * 16)));
  return words;
};

describe.skipIf(SKIP_GPU)("absmaxBits", () => {
  const rand = rng(11);
  for (const [label, n, bf16] of [
    ["f32, 70,001 values", 70001, false],
    ["bf16, 70,001 values (odd: a half-empty last word)", 70001, true],
    ["bf16, 3 values", 3, true],
  ] as const) {
    it(label, async () => {
      const gpu = await getGpu();
      const x = rand(n, -5, 5);
      x[n >> 1] = -37.25; // the largest magnitude, negative
      const values = bf16 ? decodeBF16(encodeBF16(x)) : x;
      const want = values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      const k = absmaxBits({ name: "amax_test", n, bf16, subgroups: gpu.caps.subgroups });
      const slot_info = Uint32Array.of(0, 0, 1); // word 1 of the amax buffer
      const data = bf16 ? packBf16(encodeBF16(x)) : x;
      const got = await run(gpu, k, { x: data, slot_info, amax: Uint32Array.of(7, 0, 9) });
      expect(Array.from(new Uint32Array(got.amax))).toEqual([7, bitsOf(want), 9]);
      // An amax word above every |x| stays as it was.
      const kept = await run(gpu, k, { x: data, slot_info, amax: Uint32Array.of(0, bitsOf(1e6), 0) });
      expect(new Float32Array(kept.amax)[1]).toBe(1e6);
    });
  }
});
