// The tensor-core attention (attention-sgmm.ts) run natively on this adapter against the f64 oracle
// of the attention tests, every pass and output, for several cases × kernel variants (tile options):
// how far each output is off (worst error over the tensor's largest element) and in which
// rows/columns, so a native-only fault can be pinned to what the failing variants share.
// Needs an adapter with subgroup matrices.
//   node --import tsx bench/attention-sgmm-debug.ts [--variants default,sg1,...]
// First found with it (H100, docs/bench/2026-11-23-h100-fourth-attention-sgmm-debug.log): a
// subgroupMax ahead of the products broke every backward product of the non-packed inputs.
import type { AttentionConfig, AttentionPass } from "../compiler/kernels/attention.js";
import { type AttentionSgmmTiles, attentionSgmm, attentionSgmmShape, attentionSgmmTiles } from "../compiler/kernels/attention-sgmm.js";
import { openGpu } from "../runtime/device.js";
import { FP8_SCALES, FP8_SLOTS, fp8Case, oracle } from "../test/kernels/attention-oracle.js";
import { type KernelData, f32, rng, run } from "../test/kernels/harness.js";

const gpu = await openGpu();
const sh = attentionSgmmShape(gpu.caps);
if (typeof sh === "string") throw new Error(`no native subgroup-matrix attention here: ${sh}`);
console.log(`adapter ${gpu.caps.adapterName}; mma ${JSON.stringify(sh)}; ${new Date().toISOString()}`);

type Variant = Partial<AttentionSgmmTiles>;
const VARIANTS: Record<string, Variant> = {
  default: {},
  sg1: { subgroups: 1 },
  sg2c32: { subgroups: 2, cols: 32 },
};
const arg = process.argv.indexOf("--variants");
const chosen = arg > 0 ? process.argv[arg + 1].split(",") : Object.keys(VARIANTS);

type Inputs = "f32" | "fp8-f32" | "fp8-packed";
const CASES: [string, Pick<AttentionConfig, "batch" | "seqLen" | "heads" | "kvHeads" | "headDim" | "causal">, Inputs][] = [
  ["T19 hd16 f32", { batch: 1, seqLen: 19, heads: 4, kvHeads: 2, headDim: 16, causal: true }, "f32"],
  ["T19 hd16 fp8-f32", { batch: 1, seqLen: 19, heads: 4, kvHeads: 2, headDim: 16, causal: true }, "fp8-f32"],
  ["T19 hd16 packed", { batch: 1, seqLen: 19, heads: 4, kvHeads: 2, headDim: 16, causal: true }, "fp8-packed"],
  ["T128 hd64 f32", { batch: 1, seqLen: 128, heads: 2, kvHeads: 2, headDim: 64, causal: true }, "f32"],
  ["T128 hd64 packed", { batch: 1, seqLen: 128, heads: 2, kvHeads: 2, headDim: 64, causal: true }, "fp8-packed"],
];

const rand = rng(7);

for (const [label, shape, inputs] of CASES) {
  const fp8 = inputs === "f32" ? undefined : { ...FP8_SLOTS, f32Inputs: inputs === "fp8-f32" };
  const cfg: AttentionConfig = { ...shape, name: "dbg", scale: 0.3, maxSharedBytes: gpu.caps.maxComputeWorkgroupStorageSize, ...(fp8 ? { fp8 } : {}) };
  const { batch: B, seqLen: T, heads: H, kvHeads: KV, headDim: DH } = shape;
  let ins: KernelData;
  let want: ReturnType<typeof oracle>;
  if (fp8) {
    const c = fp8Case(rand, cfg);
    want = c.want;
    const scales = FP8_SCALES;
    ins = fp8.f32Inputs
      ? { q: Float32Array.from(c.q.deq), k: Float32Array.from(c.k.deq), v: Float32Array.from(c.v.deq), dout: Float32Array.from(c.dO.deq), scales }
      : { q: c.q.words, k: c.k.words, v: c.v.words, dout: c.dO.words, scales };
  } else {
    const [q, k, v, dout] = [rand(B * T * H * DH), rand(B * T * KV * DH), rand(B * T * KV * DH), rand(B * T * H * DH, -1e-2, 1e-2)];
    want = oracle(q, k, v, dout, cfg);
    ins = { q, k, v, dout };
  }
  const nq = B * T * H * DH * 4;
  const nk = B * T * KV * DH * 4;
  const amax: KernelData = fp8 ? { amax: 8 } : {};
  for (const name of chosen) {
    const variant = VARIANTS[name];
    if (!variant) throw new Error(`unknown variant ${name} (${Object.keys(VARIANTS).join(", ")})`);
    const gen = (p: AttentionPass) => attentionSgmm(cfg, p, sh.mma, sh.subgroupSize, { ...attentionSgmmTiles(cfg, p, sh.mma, sh.subgroupSize), ...variant });
    const got: Record<string, Float32Array> = {};
    try {
      const fwd = await run(gpu, gen("fwd"), { ...ins, o: nq, lse: B * H * T * 4, ...amax });
      // The backward reads the oracle's O and LSE: a forward fault does not hide a backward one.
      const [o, lse] = [Float32Array.from(want.o), Float32Array.from(want.lse)];
      Object.assign(got, { o: f32(fwd.o), lse: f32(fwd.lse) });
      const dq = await run(gpu, gen("bwd_dq"), { ...ins, o, lse, delta: lse.byteLength, dq: nq });
      Object.assign(got, { delta: f32(dq.delta), dq: f32(dq.dq) });
      const dkv = await run(gpu, gen("bwd_dkv"), { ...ins, lse, delta: Float32Array.from(want.delta), dk: nk, dv: nk, ...amax });
      Object.assign(got, { dk: f32(dkv.dk), dv: f32(dkv.dv) });
    } catch (e) {
      console.log(`${label.padEnd(18)} ${name.padEnd(8)} FAILED after [${Object.keys(got)}]: ${(e as Error).message.split("\n")[0]}`);
      continue;
    }
    const parts: string[] = [];
    for (const key of ["o", "lse", "delta", "dq", "dk", "dv"] as const) {
      const a = got[key];
      const b = want[key];
      let scale = 0;
      for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
      let worst = 0;
      const bad: number[] = [];
      for (let i = 0; i < b.length; i++) {
        const err = Math.abs(a[i] - b[i]) / (scale || 1);
        if (!(err <= worst)) worst = Number.isNaN(err) ? Infinity : Math.max(worst, err);
        if (!(err <= 2 ** -9)) bad.push(i);
      }
      const width = key === "lse" || key === "delta" ? 1 : key === "dk" || key === "dv" ? KV * DH : H * DH;
      const rows = [...new Set(bad.map((i) => Math.floor(i / width)))];
      const cols = [...new Set(bad.map((i) => (i % width) % DH))].sort((x, y) => x - y);
      parts.push(`${key} ${worst.toExponential(1)}${bad.length ? ` (${bad.length} bad; rows ${rows.slice(0, 8).join(",")}${rows.length > 8 ? "…" : ""}; dims ${cols.slice(0, 12).join(",")}${cols.length > 12 ? "…" : ""})` : ""}`);
    }
    console.log(`${label.padEnd(18)} ${name.padEnd(8)} ${parts.join(" | ")}`);
  }
}
gpu.destroy();
