// GEMM generator on the device (lavapipe in CI) against an independent f64 CPU oracle: operands
// decoded with runtime/fp8.ts, multiplied and finished in f64, outputs encoded with runtime/fp8.ts.
// Covers NN/NT/TN × f32/e4m3/e5m2/bf16 operands × f32/bf16/FP8 outputs × epilogues, ragged shapes.
import { describe, expect, it } from "vitest";
import { chooseGemmTile, type GemmConfig, type GemmOperandType, gemmPathsFor, generateGemm, mmaShapesFor } from "../../compiler/kernels/gemm.js";
import { createComputePipeline, readBuffer, runKernel, uploadBuffer } from "../../runtime/device.js";
import { decodeBF16, decodeFP8, encodeBF16, encodeFP8, packFP8, unpackFP8 } from "../../runtime/fp8.js";
import { rewriteSgmmCalls } from "../helpers/emulate-sgmm.js";
import { getGpu, SKIP_GPU, withGpu } from "../helpers/gpu.js";

// ---------- the oracle (f64) ----------

/**
 * erfc in f64, accurate relative to its value (GELU's negative tail is erfc of a large argument):
 * for z < 2 one minus the all-positive series erf(z) = 2z/√π·e^(−z²)·Σ (2z²)ⁿ/(1·3·…·(2n+1)); for
 * z ≥ 2 the continued fraction erfc(z) = e^(−z²)/√π · 1/(z + ½/(z + 1/(z + 3/2/(z + …)))), by Lentz.
 */
function erfc64(z: number): number {
  if (z < 0) return 2 - erfc64(-z);
  if (z < 2) {
    let term = 1;
    let sum = 1;
    for (let n = 1; term > 1e-17 * sum; n++) {
      term *= (2 * z * z) / (2 * n + 1);
      sum += term;
    }
    return 1 - ((2 * z) / Math.sqrt(Math.PI)) * Math.exp(-z * z) * sum;
  }
  let f = z;
  let c = z;
  let d = 0;
  for (let i = 1; i < 500; i++) {
    d = 1 / (z + (i / 2) * d);
    c = z + i / 2 / c;
    f *= c * d;
    if (Math.abs(c * d - 1) < 1e-16) break;
  }
  return Math.exp(-z * z) / Math.sqrt(Math.PI) / f;
}

const ACT64 = {
  gelu: (x: number) => 0.5 * x * erfc64(-x / Math.SQRT2),
  silu: (x: number) => x / (1 + Math.exp(-x)),
  tanh: (x: number) => Math.tanh(x),
  relu: (x: number) => Math.max(x, 0),
};

/** Deterministic inputs: mulberry32 + Box–Muller. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  const u = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  return () => Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
}

interface Tensor {
  /** What the kernel binds (f32 values, or packed u32 words). */
  data: Float32Array | Uint32Array;
  /** The exact values the kernel sees, for the oracle. */
  values: Float64Array;
}

function packBF16(codes: Uint16Array): Uint32Array {
  const words = new Uint32Array(Math.ceil(codes.length / 2));
  for (let i = 0; i < codes.length; i++) words[i >> 1] |= codes[i] << ((i & 1) * 16);
  return words;
}

function makeTensor(type: GemmOperandType, n: number, amp: number, next: () => number): Tensor {
  const raw = Float32Array.from({ length: n }, () => amp * next());
  switch (type) {
    case "f32":
      return { data: raw, values: Float64Array.from(raw) };
    case "bf16": {
      const codes = encodeBF16(raw);
      return { data: packBF16(codes), values: Float64Array.from(decodeBF16(codes)) };
    }
    case "e4m3":
    case "e5m2": {
      const codes = encodeFP8(raw, type);
      return { data: packFP8(codes), values: Float64Array.from(decodeFP8(codes, type)) };
    }
  }
}

// ---------- subgroup matrices emulated (adapters without them) ----------

/**
 * Rewrites a subgroup-matrix kernel so that an adapter without subgroup matrices (lavapipe) runs it,
 * with the extension's semantics done redundantly by every invocation of the subgroup: a left or
 * right fragment becomes a descriptor of where it lies in workgroup memory (offset, stride, major),
 * a result becomes a row-major f32 array, multiply-accumulate reads both fragments' elements where
 * they lie, and the store writes the whole result (every invocation writes the same values).
 * Everything else — staging, decode, double buffering, fragment offsets, epilogue — is the
 * generated code as it is, so this checks the kernel's data movement exactly (FP8 products are
 * exact in f32, as in the tensor cores' f16×f16→f32). The loops' bound comes from arrayLength so that
 * lavapipe's compiler cannot unroll them (it would take minutes).
 */
function emulateSubgroupMatrices(wgsl: string): string {
  const rewritten = rewriteSgmmCalls(wgsl, (c) => {
    if (c.op === "Store") return `sgm_store_${c.arr}(${c.args[0]}, &${c.args[1]}, ${c.args[2]})`;
    const want = c.kind === "left" ? "sh_a" : "sh_b";
    if (c.arr !== want) throw new Error(`emulation: ${c.kind} fragment loaded from ${c.arr}, expected ${want}`);
    return `SgmFrag(${c.args[0]}, ${c.args[1]}, ${c.major === "col_major" ? 1 : 0}u)`;
  });
  let out = rewritten.out;
  const mma = rewritten.mma;
  const { M, N, K } = mma;
  if (!M) return out;
  out = out
    .replace(/subgroup_matrix_(left|right)<\w+, \d+, \d+>/g, "SgmFrag")
    .replace(/subgroup_matrix_result<\w+, \d+, \d+>/g, `array<f32, ${M * N}>`)
    .replace(/(acc\w+) = subgroupMatrixMultiplyAccumulate\((\w+), (\w+), \1\);/g, "sgm_mma(&$1, $2, $3);");
  if (out.includes("subgroupMatrix")) throw new Error("emulation: a subgroup-matrix call was not rewritten");
  const stores = [...new Set([...out.matchAll(/sgm_store_(\w+)\(/g)].map((x) => x[1]))];
  const at = (f: string, r: string, c: string) => `${f}.off + select(${r} * ${f}.stride + ${c}, ${c} * ${f}.stride + ${r}, ${f}.col == 1u)`;
  const helpers = [
    "struct SgmFrag { off: u32, stride: u32, col: u32 }",
    "fn sgm_n(n: u32) -> u32 { return select(n, 0u, arrayLength(&c) == 0u); }",
    `fn sgm_mma(acc: ptr<function, array<f32, ${M * N}>>, l: SgmFrag, r: SgmFrag) {
  for (var i = 0u; i < sgm_n(${M}u); i++) {
    for (var j = 0u; j < sgm_n(${N}u); j++) {
      var s = 0.0;
      for (var k = 0u; k < sgm_n(${K}u); k++) { s += f32(sh_a[${at("l", "i", "k")}]) * f32(sh_b[${at("r", "k", "j")}]); }
      (*acc)[i * ${N}u + j] += s;
    }
  }
}`,
    ...stores.map(
      (arr) => `fn sgm_store_${arr}(offset: u32, m: ptr<function, array<f32, ${M * N}>>, stride: u32) {
  for (var i = 0u; i < sgm_n(${M}u); i++) { for (var j = 0u; j < sgm_n(${N}u); j++) { ${arr}[offset + i * stride + j] = (*m)[i * ${N}u + j]; } }
}`,
    ),
  ];
  return `${out}\n${helpers.join("\n\n")}\n`;
}

/** How a subgroup-matrix case runs where the adapter lacks the extension: emulated, with its subgroup size. */
interface Emulation {
  wgsl: (wgsl: string) => string;
  tile: Partial<GemmConfig["tile"]>;
}

// ---------- running one case ----------

interface Case {
  cfg: GemmConfig;
  /** Powers of two the operands' values are multiplied by (default 1): magnitudes outside f16's range. */
  magnitude?: [number, number];
  /** Per-tensor scale_inv values for A and B and the output scale (FP8 outputs). */
  scaleA?: number;
  scaleB?: number;
}

interface Result {
  /** Oracle value (f64, unscaled) and the magnitude its f32 rounding error scales with, per element. */
  want: Float64Array;
  mag: Float64Array;
  /** What the kernel wrote: f32 values, or codes. */
  got: Float32Array | Uint16Array | Uint8Array;
  outScale: number;
  amax?: number;
}

async function runCase({ cfg, scaleA = 1, scaleB = 1, magnitude = [1, 1] }: Case, seed = 1, transform: (wgsl: string) => string = (w) => w): Promise<Result> {
  const { M, N, K } = cfg;
  const next = rng(seed);
  const A = makeTensor(cfg.a, M * K, (cfg.a === "e5m2" ? 2 : 3) * magnitude[0], next);
  const B = makeTensor(cfg.b, K * N, 2 * magnitude[1], next);
  // preScale's bindings: the f32 bits of max |operand| (what runtime absmaxBits records).
  const amaxBits = (t: Tensor) => new Uint32Array(Float32Array.of(t.values.reduce((m, x) => Math.max(m, Math.abs(x)), 0)).buffer)[0];
  const bias = Float32Array.from({ length: N }, () => next());
  const residual = Float32Array.from({ length: M * N }, () => next());
  const old = Float32Array.from({ length: M * N }, () => next());
  const oldBf16 = encodeBF16(old);
  const oldValues = cfg.out === "bf16" ? decodeBF16(oldBf16) : old;
  const ep = cfg.epilogue ?? {};

  // Oracle: C = s·op(A)·op(B) in f64, then bias → act → residual → (+ old).
  const s = (cfg.scaleA ? scaleA : 1) * (cfg.scaleB ? scaleB : 1);
  const a = (m: number, k: number) => A.values[cfg.transA ? k * M + m : m * K + k];
  const b = (k: number, n: number) => B.values[cfg.transB ? n * K + k : k * N + n];
  const want = new Float64Array(M * N);
  const mag = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let acc = 0;
      let absAcc = 0;
      for (let k = 0; k < K; k++) {
        acc += a(m, k) * b(k, n);
        absAcc += Math.abs(a(m, k) * b(k, n));
      }
      let x = s * acc;
      let mg = Math.abs(s) * absAcc;
      if (ep.bias) (x += bias[n]), (mg += Math.abs(bias[n]));
      if (ep.act) x = ACT64[ep.act](x);
      if (ep.residual) (x += residual[m * N + n]), (mg += Math.abs(residual[m * N + n]));
      if (cfg.accumulate) (x += oldValues[m * N + n]), (mg += Math.abs(oldValues[m * N + n]));
      want[m * N + n] = x;
      mag[m * N + n] = mg;
    }
  }
  // FP8 outputs: a scale that puts the largest value at 1.25× the format's max, so that both
  // ordinary rounding and saturation are exercised.
  const fmtMax = cfg.out === "e4m3" ? 448 : 57344;
  const outScale = Math.fround((1.25 * fmtMax) / Math.max(1e-30, ...want.map(Math.abs)));

  return withGpu(async (gpu) => {
    const kernel = generateGemm(cfg);
    const pipeline = await createComputePipeline(gpu, transform(kernel.wgsl), kernel.entryPoint, cfg.name);
    const outWords = cfg.out === "f32" ? M * N : cfg.out === "bf16" ? Math.ceil((M * N) / 2) : Math.ceil((M * N) / 4);
    const initial =
      cfg.accumulate && cfg.out === "f32" ? old : cfg.accumulate ? packBF16(oldBf16) : new Uint32Array(outWords);
    const data: Record<string, ArrayBufferView> = {
      a: A.data,
      b: B.data,
      c: initial,
      scale_a: Float32Array.of(scaleA),
      scale_b: Float32Array.of(scaleB),
      bias,
      residual,
      scale_out: Float32Array.of(outScale),
      amax: Uint32Array.of(0),
      amax_a: Uint32Array.of(amaxBits(A)),
      amax_b: Uint32Array.of(amaxBits(B)),
    };
    const buffers = kernel.bindings.map((bd) => uploadBuffer(gpu, data[bd.name], bd.name));
    await runKernel(gpu, pipeline, buffers, kernel.workgroups);
    const cIdx = kernel.bindings.findIndex((bd) => bd.name === "c");
    const raw = await readBuffer(gpu, buffers[cIdx], outWords * 4);
    let got: Result["got"];
    if (cfg.out === "f32") got = new Float32Array(raw);
    else if (cfg.out === "bf16") got = new Uint16Array(raw).slice(0, M * N);
    else got = unpackFP8(new Uint32Array(raw), M * N);
    let amax: number | undefined;
    const amaxIdx = kernel.bindings.findIndex((bd) => bd.name === "amax");
    if (amaxIdx >= 0) amax = new Float32Array(await readBuffer(gpu, buffers[amaxIdx], 4))[0];
    for (const buf of buffers) buf.destroy();
    return { want, mag, got, outScale, amax };
  });
}

// ---------- checks ----------

// Tolerance on the f32 result: products of FP8 (and bf16) values are exact in f32, so only the
// summation order and the epilogue's own roundings differ from the f64 oracle. A K-term f32 sum
// errs by at most ≈ K·2^-24·Σ|a·b| (6e-6·Σ|a·b| at K = 100; the largest K here is 45), and each
// epilogue step adds a few ulps of its operands (erf in gelu ≤ 1e-7 absolute; activations have
// slope ≤ 1.13). So |got − want| ≤ 1e-5·mag + 1e-7, mag = |s|·Σ|a·b| + |bias| + |residual| + |old|.
const REL = 1e-5;
const tolOf = (mag: number) => REL * mag + 1e-7;

function checkF32(r: Result): void {
  const got = r.got as Float32Array;
  let worst = 0;
  for (let i = 0; i < r.want.length; i++) worst = Math.max(worst, Math.abs(got[i] - r.want[i]) / tolOf(r.mag[i]));
  expect(worst, "max |got − want| / tolerance").toBeLessThanOrEqual(1);
}

/**
 * Codes must equal the oracle's code, except where the exact value lies within the f32 tolerance of
 * a rounding boundary: then one of the two neighbouring codes is right. Those near-ties must be rare.
 */
function checkCodes(r: Result, encode: (x: number) => number, decode: (c: number) => number, scale: number): void {
  let nearTies = 0;
  for (let i = 0; i < r.want.length; i++) {
    const y = r.want[i] * scale;
    const t = tolOf(r.mag[i]) * scale;
    const code = r.got[i];
    if (code === encode(y)) continue;
    const lo = decode(encode(y - t));
    const hi = decode(encode(y + t));
    const g = decode(code);
    expect(g >= lo && g <= hi, `element ${i}: code 0x${code.toString(16)} (${g}) for ${y}, allowed [${lo}, ${hi}]`).toBe(true);
    nearTies++;
  }
  expect(nearTies / r.want.length, "fraction of codes one step off at a rounding tie").toBeLessThanOrEqual(0.01);
}

function checkResult(cfg: GemmConfig, r: Result): void {
  if (cfg.out === "f32") return checkF32(r);
  if (cfg.out === "bf16") {
    return checkCodes(r, (x) => encodeBF16(Float32Array.of(x))[0], (c) => decodeBF16(Uint16Array.of(c))[0], 1);
  }
  const fmt = cfg.out;
  checkCodes(r, (x) => encodeFP8(Float32Array.of(x), fmt)[0], (c) => decodeFP8(Uint8Array.of(c), fmt)[0], r.outScale);
  // amax is of the unscaled result, so it must match max|want| to the f32 tolerance.
  let wantMax = 0;
  let tol = 0;
  for (let i = 0; i < r.want.length; i++) {
    wantMax = Math.max(wantMax, Math.abs(r.want[i]));
    tol = Math.max(tol, tolOf(r.mag[i]));
  }
  expect(r.amax, "amax").toBeDefined();
  expect(Math.abs((r.amax ?? NaN) - wantMax), `amax ${r.amax} vs ${wantMax}`).toBeLessThanOrEqual(tol);
}

// ---------- the cases ----------

type Shape = [M: number, N: number, K: number];
// Not multiples of any tile; K = 45 and K = 3 make packed FP8/bf16 rows start mid-word.
const RAGGED: Shape = [33, 17, 45];
const RAGGED4: Shape = [33, 20, 45]; // N % 4 == 0 for packed outputs
const THIN: Shape = [1, 20, 3]; // M = 1, K = 3
const MULTI: Shape = [70, 68, 40]; // several workgroups and K steps with tails; word-aligned loads

function gemm(
  layout: "NN" | "NT" | "TN",
  a: GemmOperandType,
  b: GemmOperandType,
  out: GemmConfig["out"],
  [M, N, K]: Shape,
  extra: Partial<GemmConfig> = {},
): GemmConfig {
  const ep = extra.epilogue ?? {};
  const parts = [ep.bias && "bias", ep.act, ep.residual && "residual", extra.accumulate && "accumulate"].filter(Boolean);
  const tile = extra.tile ? `_tile${JSON.stringify(extra.tile).replace(/[{}"]/g, "")}` : "";
  const name = `${layout}_${a}x${b}_${out}_${M}x${N}x${K}${parts.length ? `_${parts.join("+")}` : ""}${tile}`;
  return { name, M, N, K, transA: layout[0] === "T", transB: layout[1] === "T", a, b, out, path: "fma", ...extra };
}

const GELU = { epilogue: { bias: true, act: "gelu" as const } };
const RES = { epilogue: { residual: true } };

// Every layout × operand pair once, rotating outputs and epilogues so that each output type and each
// epilogue meets several layouts and operand types; the other activations, E5M2 output and
// accumulation ride along. Without caps these small shapes get the default "direct" FMA variant
// (the CPU one); FMA_VARIANTS below covers the other tiles. Each case is one pipeline, and compiling
// a pipeline costs lavapipe 1.5–3 s of CPU, so the lists are kept short.
const CASES: Case[] = [
  { cfg: gemm("NN", "f32", "f32", "f32", RAGGED) },
  { cfg: gemm("NT", "f32", "f32", "bf16", RAGGED4, GELU) },
  { cfg: gemm("TN", "f32", "f32", "e4m3", THIN, RES) },
  { cfg: gemm("NN", "e4m3", "e4m3", "e4m3", RAGGED4, { ...GELU, scaleA: true, scaleB: true }), scaleA: 0.37, scaleB: 1.9 },
  { cfg: gemm("NT", "e4m3", "e4m3", "f32", RAGGED, { epilogue: { act: "tanh", residual: true }, scaleA: true }), scaleA: 0.061 },
  { cfg: gemm("TN", "e4m3", "e4m3", "bf16", MULTI, RES) },
  { cfg: gemm("NN", "e5m2", "e4m3", "bf16", THIN, RES) },
  { cfg: gemm("NT", "e5m2", "e4m3", "e4m3", MULTI, { ...GELU, scaleA: true, scaleB: true }), scaleA: 2.5, scaleB: 0.125 },
  { cfg: gemm("TN", "e5m2", "e4m3", "f32", RAGGED4, { epilogue: { act: "relu" }, accumulate: true }) },
  { cfg: gemm("NN", "bf16", "bf16", "f32", MULTI, GELU) },
  { cfg: gemm("NT", "bf16", "bf16", "e5m2", RAGGED4, { epilogue: { bias: true, act: "silu" } }) },
  { cfg: gemm("TN", "bf16", "bf16", "bf16", RAGGED4, { ...RES, accumulate: true }) },
];

// The FMA tiles beyond the small-shape default: the GPU's shared variant with grouped 8×8 blocks
// (several workgroups and K steps over MULTI), with ungrouped rows (tm = 2), at its 64×64 default,
// and the direct variant with 4×8 blocks and two K chunks per step, in each layout.
const SHARED_8X8 = { fmaLoads: "shared" as const, bm: 32, bn: 32, bk: 8, tm: 8, tn: 8 };
const FMA_VARIANTS: Case[] = [
  { cfg: gemm("NN", "f32", "f32", "f32", MULTI, { tile: SHARED_8X8 }) },
  { cfg: gemm("NT", "e4m3", "e4m3", "e4m3", MULTI, { ...GELU, scaleA: true, tile: SHARED_8X8 }), scaleA: 0.25 },
  { cfg: gemm("TN", "e4m3", "e4m3", "bf16", MULTI, { ...RES, tile: { fmaLoads: "shared", bm: 16, bn: 32, bk: 8, tm: 2, tn: 4 } }) },
  { cfg: gemm("NT", "bf16", "bf16", "f32", RAGGED, { tile: { fmaLoads: "shared", bm: 64, bn: 64, bk: 16, tm: 4, tn: 4 } }) },
  { cfg: gemm("NN", "e5m2", "e4m3", "f32", MULTI, { epilogue: { bias: true }, tile: { fmaLoads: "direct", bm: 16, bn: 32, bk: 8, tm: 4, tn: 8 } }) },
  { cfg: gemm("TN", "f32", "f32", "f32", RAGGED, { accumulate: true, tile: { fmaLoads: "direct", bm: 32, bn: 16, bk: 8, tm: 4, tn: 8 } }) },
];

/**
 * Every FP8 code of `format` through a GEMM, exactly: A [256, 4] holds code i at (i, 0) and zeros
 * elsewhere, B [4, 4] is the identity, so C[i, 0] = decode(i) (inf and NaN included) and the codes
 * pass through the word-at-a-time decoder (rows of 4 codes are whole words).
 */
async function everyCode(format: "e4m3" | "e5m2", path: GemmConfig["path"], emulate?: Emulation): Promise<void> {
  const codes = new Uint8Array(256 * 4);
  for (let i = 0; i < 256; i++) codes[i * 4] = i;
  const one = encodeFP8(Float32Array.of(1), "e4m3")[0];
  const identity = Uint8Array.from({ length: 16 }, (_, i) => (i % 5 === 0 ? one : 0));
  const cfg: GemmConfig = { name: `every_${format}_${path}`, M: 256, N: 4, K: 4, transA: false, transB: false, a: format, b: "e4m3", out: "f32", path, tile: emulate?.tile };
  const got = await withGpu(async (gpu) => {
    const k = generateGemm(cfg);
    const p = await createComputePipeline(gpu, emulate ? emulate.wgsl(k.wgsl) : k.wgsl, k.entryPoint, cfg.name);
    const bufs = [uploadBuffer(gpu, packFP8(codes), "a"), uploadBuffer(gpu, packFP8(identity), "b"), uploadBuffer(gpu, new Float32Array(256 * 4), "c")];
    await runKernel(gpu, p, bufs, k.workgroups);
    const out = new Float32Array(await readBuffer(gpu, bufs[2], 256 * 16));
    for (const buf of bufs) buf.destroy();
    return out;
  });
  const want = decodeFP8(Uint8Array.from({ length: 256 }, (_, i) => i), format);
  // (−0 comes out +0: the f32 accumulator starts at +0, and +0 + −0 = +0.)
  for (let i = 0; i < 256; i++) {
    const ok = got[i * 4] === want[i] || (Number.isNaN(got[i * 4]) && Number.isNaN(want[i]));
    expect(ok, `code 0x${i.toString(16)}: got ${got[i * 4]}, want ${want[i]}`).toBe(true);
  }
}

describe.skipIf(SKIP_GPU)("gemm (FMA path, on the device)", () => {
  for (const c of [...CASES, ...FMA_VARIANTS]) {
    it(c.cfg.name, async () => {
      checkResult(c.cfg, await runCase(c));
    });
  }

  it("decodes every E4M3 and E5M2 code exactly, a word at a time", async () => {
    await everyCode("e4m3", "fma");
    await everyCode("e5m2", "fma");
  });

  it("gelu epilogue is exact-erf GELU: 2e-7 absolute, and relative in the negative tail", async () => {
    // K = 1 GEMM, C[0, n] = gelu(1·x_n): only the epilogue's erfc decides the error. x ∈ [−13, 13]
    // (gelu(−13) ≈ −8e-38, near the f32 normal minimum).
    const N = 4096;
    const x = Float32Array.from({ length: N }, (_, i) => -13 + (26 * i) / (N - 1));
    const cfg = gemm("NN", "f32", "f32", "f32", [1, N, 1], { epilogue: { act: "gelu" } });
    const got = await withGpu(async (gpu) => {
      const k = generateGemm(cfg);
      const p = await createComputePipeline(gpu, k.wgsl, k.entryPoint, cfg.name);
      const bufs = [uploadBuffer(gpu, Float32Array.of(1), "a"), uploadBuffer(gpu, x, "b"), uploadBuffer(gpu, new Float32Array(N), "c")];
      await runKernel(gpu, p, bufs, k.workgroups);
      const out = new Float32Array(await readBuffer(gpu, bufs[2], N * 4));
      for (const buf of bufs) buf.destroy();
      return out;
    });
    let absErr = 0;
    let tailRel = 0;
    for (let i = 0; i < N; i++) {
      const want = ACT64.gelu(x[i]);
      // erfc is good to 1.2e-7 absolute; the last products round at 2^-24 |gelu| each.
      absErr = Math.max(absErr, Math.abs(got[i] - want) - 2 ** -22 * Math.abs(want));
      if (x[i] < -1 && Math.abs(want) > 1e-37) tailRel = Math.max(tailRel, Math.abs(got[i] - want) / Math.abs(want));
    }
    expect(absErr, "absolute error beyond result rounding").toBeLessThanOrEqual(2e-7);
    // erfc's polynomials are good to 7e-7 relative, but its argument a = |x|·√½ carries ~1e-7 relative
    // f32 rounding, which exp(−a²) multiplies by 2a² (≈ 170 at x = −13), plus the device exp's own
    // error (WGSL allows 3 + 2|arg| ulp): 1.6e-5 measured on lavapipe.
    expect(tailRel, "relative error for x < −1").toBeLessThanOrEqual(3e-5);
  });
});

/** A bf16×bf16 config on the subgroup-matrix path with preScale, its operands at the given magnitudes. */
const prescaled = (cfg: GemmConfig, magnitude: [number, number]): Case => ({ cfg: { ...cfg, name: `${cfg.name}_prescaled`, path: "subgroup-matrix", preScale: true }, magnitude });

// Subgroup-matrix configs beyond the defaults: a 16×8×16 tensor-core shape with a narrower tile;
// the operand copies as stored (padded rows) with 2×4 subgroups and bk 32; padded k-major, bk 64.
const SGMM_EXTRA: Case[] = [
  { cfg: { ...gemm("NT", "e4m3", "e4m3", "e4m3", RAGGED4, { ...GELU, scaleA: true, scaleB: true }), path: "subgroup-matrix" }, scaleA: 0.5, scaleB: 3 },
  { cfg: { ...gemm("TN", "e5m2", "e4m3", "f32", MULTI, { accumulate: true }), path: "subgroup-matrix", tile: { mma: { M: 16, N: 8, K: 16 }, bn: 64, bk: 16 } } },
  {
    cfg: { ...gemm("NT", "e5m2", "e4m3", "e4m3", MULTI, { ...GELU, scaleA: true, scaleB: true }), path: "subgroup-matrix", tile: { sharedLayout: "storage", sgRows: 2, sgCols: 4, bk: 32 } },
    scaleA: 2.5,
    scaleB: 0.125,
  },
  { cfg: { ...gemm("NN", "e4m3", "e5m2", "bf16", MULTI, RES), path: "subgroup-matrix", tile: { bm: 64, bn: 64, sgRows: 2, sgCols: 2, bk: 64, pad: 8 } } },
  // Double-buffered copies (stages 2) in each layout, bk 16 and 32, both copy layouts.
  { cfg: { ...gemm("NT", "e4m3", "e4m3", "f32", MULTI, { scaleA: true }), path: "subgroup-matrix", tile: { stages: 2, bk: 32, pad: 8 } }, scaleA: 0.75 },
  { cfg: { ...gemm("NN", "e5m2", "e4m3", "e4m3", MULTI, GELU), path: "subgroup-matrix", tile: { stages: 2, sharedLayout: "storage" } } },
  { cfg: { ...gemm("TN", "e4m3", "e5m2", "f32", RAGGED, RES), path: "subgroup-matrix", tile: { stages: 2, bk: 32, sharedLayout: "storage" } } },
  // bf16 × bf16 pre-scaled into f16 (preScale): A ~1e6 would overflow f16 and B ~1e-9 flush to zero
  // without it; the three layouts of a linear layer (forward NT, dgrad NN, wgrad TN), K % 4 != 0 in one.
  prescaled(gemm("NT", "bf16", "bf16", "f32", MULTI), [2 ** 20, 2 ** -30]),
  prescaled(gemm("NN", "bf16", "bf16", "f32", RAGGED, RES), [2 ** -40, 2 ** 40]),
  prescaled(gemm("TN", "bf16", "bf16", "f32", MULTI, { accumulate: true }), [2 ** 10, 2 ** -20]),
];
const sgmmCases = SGMM_EXTRA.map((c) => c.cfg);

describe("gemm generator", () => {
  const lavapipeCaps = { f16: true, subgroups: true, subgroupMatrix: [] };
  const h100Caps = {
    f16: true,
    subgroups: true,
    subgroupMatrix: [
      { componentType: "f16", resultComponentType: "f16", M: 16, N: 16, K: 16 },
      { componentType: "f16", resultComponentType: "f32", M: 16, N: 8, K: 16 },
      { componentType: "f16", resultComponentType: "f32", M: 16, N: 16, K: 16 },
    ],
  };

  it("picks the subgroup-matrix path only where f16→f32 matrices exist", () => {
    expect(gemmPathsFor(lavapipeCaps)).toEqual(["fma"]);
    expect(gemmPathsFor(h100Caps)).toEqual(["subgroup-matrix", "fma"]);
  });

  it("rejects what a path or layout cannot do, naming the kernel", () => {
    const base = gemm("NT", "bf16", "bf16", "f32", RAGGED4);
    expect(() => generateGemm({ ...base, path: "subgroup-matrix" })).toThrow(/'NT_bf16xbf16.*FP8 operands, or bf16 ones with preScale/);
    expect(() => generateGemm({ ...base, preScale: true })).toThrow(/preScale applies to bf16×bf16 on the subgroup-matrix path/);
    expect(() => generateGemm({ ...gemm("NT", "e4m3", "e4m3", "f32", RAGGED4), path: "subgroup-matrix", preScale: true })).toThrow(/preScale applies/);
    expect(() => generateGemm({ ...base, out: "e4m3", N: 18 })).toThrow(/N % 4 == 0/);
    expect(() => generateGemm({ ...base, out: "e4m3", accumulate: true })).toThrow(/accumulate/);
    expect(() => generateGemm({ ...base, tile: { bm: 30 } })).toThrow(/multiples of 4/);
    expect(() => generateGemm({ ...base, tile: { tn: 6, bn: 12 } })).toThrow(/tn must be a multiple of 4/);
    expect(() => generateGemm({ ...base, tile: { fmaLoads: "direct", tm: 2 } })).toThrow(/direct FMA variant needs tm/);
    expect(() => generateGemm({ ...base, tile: { sharedLayout: "storage" } })).toThrow(/subgroup-matrix path/);
  });

  it("chooses tiles per adapter and shape", () => {
    const cfg = gemm("NT", "f32", "f32", "f32", [1024, 96, 384]);
    const big = { ...cfg, M: 4096, N: 4096, K: 4096 };
    expect(chooseGemmTile(cfg, { isCpu: true }).fmaLoads).toBe("direct");
    expect(chooseGemmTile(big, { isCpu: true }).fmaLoads).toBe("direct");
    expect(chooseGemmTile(cfg, {}).fmaLoads).toBe("direct"); // no caps: small shapes take the direct variant
    expect(chooseGemmTile(big, { isCpu: false })).toMatchObject({ fmaLoads: "shared", bm: 128, bn: 64, tm: 8, tn: 4 });
    expect(chooseGemmTile({ ...cfg, M: 1024, N: 1024 }, { isCpu: false })).toMatchObject({ fmaLoads: "shared", bm: 64, bn: 64 });
    const sg = { ...big, path: "subgroup-matrix" as const };
    expect(chooseGemmTile(sg, { maxComputeWorkgroupStorageSize: 32768 })).toMatchObject({ sgRows: 4, sgCols: 2, bk: 16, pad: 8 });
    expect(chooseGemmTile(sg, { maxComputeWorkgroupStorageSize: 16384 })).toMatchObject({ sgRows: 2, sgCols: 2 });
    expect(chooseGemmTile(sg, { subgroupMatrix: h100Caps.subgroupMatrix, subgroupMinSize: 32, subgroupMaxSize: 32 }).mma).toEqual({ M: 16, N: 16, K: 16 });
    // An undefined tile is the chosen default; a partial tile overrides fields of it.
    expect(generateGemm(big, { isCpu: true }).workgroups).toEqual([4096 / 32, 4096 / 8, 1]); // 8×32 tiles on CPU adapters
    expect(generateGemm({ ...big, tile: { bm: 64 } }, { isCpu: false }).workgroups).toEqual([4096 / 64, 4096 / 64, 1]);
  });

  it("emits subgroup-matrix WGSL: f16 tiles in workgroup memory, MMA into f32, shared epilogue", () => {
    for (const cfg of sgmmCases) {
      const { wgsl, workgroups } = generateGemm(cfg);
      expect(wgsl).toContain("enable chromium_experimental_subgroup_matrix;");
      expect(wgsl).toMatch(/subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, (row|col)_major>\(&sh_a,/);
      expect(wgsl).toMatch(/subgroupMatrixLoad<subgroup_matrix_right<f16, \d+, 16>, (row|col)_major>\(&sh_b,/);
      expect(wgsl).toContain("subgroupMatrixMultiplyAccumulate(");
      expect(wgsl).toMatch(/subgroupMatrixStore<row_major>\(&sh_c,/);
      expect(wgsl).toContain("fn epilogue(");
      expect(workgroups[2]).toBe(1);
    }
  });
});

// Every FP8×FP8 case above on the subgroup-matrix path against the same oracle, plus SGMM_EXTRA. On an
// adapter with subgroup matrices (the GPU host: `source .gpu/enter.sh && npx vitest run
// test/kernels/gemm.test.ts`) they run as generated; elsewhere (lavapipe) with the matrix operations
// emulated per invocation (emulateSubgroupMatrices) at the adapter's subgroup size, which checks
// everything but the tensor cores themselves. bench/gemm.ts checks 256³ on the hardware too.
describe.skipIf(SKIP_GPU)("gemm (subgroup-matrix path; emulated where the adapter lacks it)", () => {
  /** null where the adapter runs subgroup matrices, else how to emulate them (or the reason to skip). */
  async function emulation(): Promise<Emulation | null | string> {
    const gpu = await getGpu();
    if (gemmPathsFor(gpu.caps).includes("subgroup-matrix")) return null;
    // Each emulated kernel costs lavapipe ~8 s idle (~50 s on the shared 2-core machine), so opt-in.
    if (process.env.FOGC_EMULATE_SGMM !== "1") return `adapter '${gpu.caps.adapterName}' has no subgroup matrices; FOGC_EMULATE_SGMM=1 runs them emulated (slow)`;
    if (!gpu.caps.f16 || !gpu.caps.subgroups) throw new Error(`adapter '${gpu.caps.adapterName}' has neither subgroup matrices nor f16 + subgroups to emulate them`);
    // One 32×32 subgroup per workgroup: the emulation's redundant per-invocation MMAs make bigger tiles slow on lavapipe.
    return { wgsl: emulateSubgroupMatrices, tile: { subgroupSize: gpu.caps.subgroupMinSize, bm: 32, bn: 32, sgRows: 1, sgCols: 1 } };
  }
  const fp8 = (t: GemmOperandType) => t === "e4m3" || t === "e5m2";
  // Default subgroup-matrix tiles; a case that asks for the storage-layout copy keeps it.
  const onSgmm = CASES.filter((c) => fp8(c.cfg.a) && fp8(c.cfg.b)).map((c): Case => ({ ...c, cfg: { ...c.cfg, name: `${c.cfg.name}_sgmm`, path: "subgroup-matrix" } }));
  it("decodes every E4M3 and E5M2 code exactly into f16", async (ctx) => {
    const emu = await emulation();
    if (typeof emu === "string") return ctx.skip(emu);
    await everyCode("e4m3", "subgroup-matrix", emu ?? undefined);
    await everyCode("e5m2", "subgroup-matrix", emu ?? undefined);
  }, 600_000);
  for (const c of [...onSgmm, ...SGMM_EXTRA]) {
    it(c.cfg.name, async (ctx) => {
      const emu = await emulation();
      if (typeof emu === "string") return ctx.skip(emu);
      const mma = c.cfg.tile?.mma;
      const gpu = await getGpu();
      if (!emu && mma && !mmaShapesFor(gpu.caps).some((s) => s.M === mma.M && s.N === mma.N && s.K === mma.K)) {
        return ctx.skip(`adapter has no f16→f32 ${mma.M}×${mma.N}×${mma.K} subgroup matrix`);
      }
      const run = emu ? { ...c, cfg: { ...c.cfg, tile: { ...c.cfg.tile, ...emu.tile } } } : c;
      checkResult(c.cfg, await runCase(run, 1, emu?.wgsl));
    }, 600_000);
  }
});
