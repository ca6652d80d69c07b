// Native vs emulated tensor-core attention (attention-sgmm.ts) on this adapter, every pass and output:
// how many elements differ and in which rows/columns. Needs an adapter with subgroup matrices.
//   node --import tsx bench/attention-sgmm-debug.ts
import type { AttentionConfig, AttentionPass } from "../compiler/kernels/attention.js";
import { attentionSgmm, attentionSgmmShape } from "../compiler/kernels/attention-sgmm.js";
import { openGpu } from "../runtime/device.js";
import { emulateSubgroupMatrices } from "../test/helpers/emulate-sgmm.js";
import { type KernelData, f32, rng, run } from "../test/kernels/harness.js";
const gpu = await openGpu();
const sh = attentionSgmmShape(gpu.caps);
if (typeof sh === "string") throw new Error(sh);
console.log("mma", JSON.stringify(sh));
const rand = rng(7);
for (const [label, shape, fp8, sP] of [
  ["f32 A", { batch: 1, seqLen: 19, heads: 4, kvHeads: 2, headDim: 16, causal: true }, false, 448],
  ["fp8 A sP448", { batch: 1, seqLen: 19, heads: 4, kvHeads: 2, headDim: 16, causal: true }, true, 448],
  ["fp8 A sP1", { batch: 1, seqLen: 19, heads: 4, kvHeads: 2, headDim: 16, causal: true }, true, 1],
  ["fp8 T64 hd64", { batch: 1, seqLen: 64, heads: 2, kvHeads: 2, headDim: 64, causal: true }, true, 448],
  ["f32 T64 hd64", { batch: 1, seqLen: 64, heads: 2, kvHeads: 2, headDim: 64, causal: true }, false, 448],
] as const) {
  const cfg: AttentionConfig = { ...shape, name: "dbg", scale: 0.3, maxSharedBytes: gpu.caps.maxComputeWorkgroupStorageSize, ...(fp8 ? { fp8: { scaleInv: { q: 0, k: 0, v: 0, dO: 0 }, scale: { p: 0, dS: 1 }, amax: { p: 0, dS: 1 }, f32Inputs: true } } : {}) };
  const { batch: B, seqLen: T, heads: H, kvHeads: KV, headDim: DH } = shape;
  const [q, k, v, dO] = [rand(B * T * H * DH), rand(B * T * KV * DH), rand(B * T * KV * DH), rand(B * T * H * DH, -1e-2, 1e-2)];
  const scales = Float32Array.of(sP, 3000.5);
  const outs: Record<string, Record<string, Float32Array>> = {};
  for (const how of ["native", "emulated"]) {
    const gen = (p: AttentionPass) => { const k = attentionSgmm(cfg, p, sh.mma, sh.subgroupSize); return how === "native" ? k : { ...k, wgsl: emulateSubgroupMatrices(k.wgsl) }; };
    const extra: KernelData = fp8 ? { scales, amax: 8 } : {};
    const fwd = await run(gpu, gen("fwd"), { q, k, v, o: q.byteLength, lse: B * H * T * 4, ...extra });
    const o = f32(fwd.o), lse = f32(fwd.lse);
    const dq = await run(gpu, gen("bwd_dq"), { q, k, v, o, dout: dO, lse, delta: lse.byteLength, dq: q.byteLength, ...(fp8 ? { scales } : {}) });
    const dkv = await run(gpu, gen("bwd_dkv"), { q, k, v, dout: dO, lse, delta: f32(dq.delta), dk: k.byteLength, dv: v.byteLength, ...extra });
    outs[how] = { o, lse, delta: f32(dq.delta), dq: f32(dq.dq), dk: f32(dkv.dk), dv: f32(dkv.dv) };
  }
  for (const key of Object.keys(outs.native)) {
    const a = outs.native[key], b = outs.emulated[key];
    const scale = Math.max(...Array.from(b, Math.abs)) || 1;
    const bad: number[] = [];
    for (let i = 0; i < a.length; i++) if (!(Math.abs(a[i] - b[i]) <= 4e-3 * scale)) bad.push(i);
    const width = key === "lse" || key === "delta" ? 1 : key === "dk" || key === "dv" ? KV * DH : H * DH;
    const rows = [...new Set(bad.map((i) => Math.floor(i / width)))];
    const cols = [...new Set(bad.map((i) => i % width))];
    console.log(`${label.padEnd(14)} ${key.padEnd(6)} bad ${bad.length}/${a.length}  rows ${rows.slice(0, 24).join(",")}  cols ${cols.slice(0, 24).join(",")}${bad.length ? `  e.g. [${bad[0]}] ${a[bad[0]]} vs ${b[bad[0]]}` : ""}`);
  }
}
gpu.destroy();
