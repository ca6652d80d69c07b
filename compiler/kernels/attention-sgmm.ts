// Fused attention on subgroup matrices (tensor cores): the FlashAttention-2 passes of attention.ts
// (same bindings, same semantics, so the lowering can pick either) with every matrix product
// (S = Q·Kᵀ, dP = dO·Vᵀ, O += P·V, dQ += dS·K, dV += Pᵀ·dO, dK += dSᵀ·Q) as f16 × f16 → f32
// subgroup-matrix multiply-accumulates on tiles staged in workgroup memory as f16.
//
// Layout: a workgroup of `subgroups` subgroups owns R = subgroups·mma.M rows — query rows ("fwd",
// "bwd_dq") or key rows ("bwd_dkv") — and steps over the other side in tiles of C rows. Subgroup s
// owns the strip of mma.M rows s·M.. of every product, so S/dP strips (f32) go from its result
// matrices to workgroup memory, its own invocations turn them into P/dS (f32 math, f16 stores), and
// its accumulators (O, dQ, or dK and dV: head_dim/mma.N result matrices each) live across the loop,
// and so do its own rows of the left operands of S and dP as register left fragments (head_dim/mma.K
// each): Q ("fwd"), Q and dO ("bwd_dq"), K and V ("bwd_dkv"), staged once through the step buffer.
// Workgroup memory thus holds only the step buffer (the other side's C-row tiles) and the strips,
// whatever R is: the budget buys larger tiles, and no MMA step loads its left fragment.
// No subgroup reads another's strips; the barriers order the shared K/V (or Q/dO) tiles and make
// a subgroup's stores visible to its own fragment loads (WGSL has no narrower barrier).
//
// The forward is two-pass in every mode (row max/sum over the keys first, then P = exp(S − lse)
// normalised), so the O accumulator never needs a per-row rescale (subgroup matrices have none).
//
// Precision (operands f16, accumulation f32):
// - Packed FP8 inputs are staged as their decoded codes (exact in f16) and the scale_inv of each
//   operand multiplies the f32 results, so S, dP and the accumulations see exact operands.
// - FP8DPA's P and dS are staged as decode(encode(x·s)) (E4M3 ⊂ f16 and E5M2 ⊂ f16: exact) and the
//   accumulators are multiplied by 1/s after the loop: the fake quantisation is exact too.
// - f32 Q/K/V are rounded to f16 (activations; a magnitude over 65504 would overflow).
// - f32 dO is scaled by a power of two 2^E before rounding, chosen from max |dO| over the rows the
//   workgroup reads (its query tile for bwd_dq, a pre-pass over the group's heads for bwd_dkv) so
//   that max |dO|·2^E ∈ [1, 2): gradients are often far below f16's normal range (6.1e-5), and a
//   constant E keeps it a factor of the accumulators (dV sums over query rows, so a per-row scale
//   would not factor out). Non-FP8 dS is stored as dS·2^E: dS = P⊙(dP − D) is linear in dO, so
//   with |dO·2^E| < 2 and O an average of V's rows, |dS·2^E| ≤ 2‖V_j‖₁ + |D_i|·2^E ≤ 4·max_j ‖V_j‖₁:
//   in range unless a row of V sums past ~16k in magnitude; values far below the tile's largest
//   lose bits only where they barely contribute.
import type { Fp8Format } from "../ir.js";
import { WgslBuilder, fmtF32 } from "../wgsl.js";
import { type AttentionConfig, type AttentionPass, bindAttention } from "./attention.js";
import { type MmaShape, mmaShapesFor } from "./gemm.js";
import { fp8WordDecoder } from "./gemm-io.js";
import { FP8_FORMATS } from "../../runtime/fp8.js";
import { type Codec, type KernelSource, atomicMaxOf, check, finish, fp8Codec, isPow2, nextPow2 } from "./reduce.js";

/** Subgroups per workgroup (each owns mma.M rows) and the rows C of the other side per loop step. */
export interface AttentionSgmmTiles {
  subgroups: number;
  cols: number;
}

/** The part of runtime/device.ts GpuCaps the subgroup-matrix attention needs. */
export interface AttentionSgmmCaps {
  f16: boolean;
  subgroups: boolean;
  subgroupMinSize?: number;
  subgroupMaxSize?: number;
  subgroupMatrix: { componentType: string; resultComponentType: string; M: number; N: number; K: number }[];
  maxComputeWorkgroupStorageSize?: number;
  isCpu?: boolean;
}

const NEG = fmtF32(-1e30); // masked logit: exp(NEG − m) = 0 for any finite row max m
const PAD16 = 8; // f16 elements added to every staged row (16 bytes: spreads fragment rows over banks)
const PAD32 = 4; // f32 elements added to the rows of the S/dP tiles
const MAX_INVOCATIONS = 256; // WebGPU's default maxComputeInvocationsPerWorkgroup

const lcm = (a: number, b: number): number => {
  const gcd = (x: number, y: number): number => (y ? gcd(y, x % y) : x);
  return (a / gcd(a, b)) * b;
};

// Two native-only faults of the H100 (Dawn/Vulkan, driver 580), each of which made products wrong
// while the same kernel emulated per invocation was right (bench/attention-sgmm-debug.ts): an
// atomic<u32> workgroup array anywhere in the kernel, and a subgroupMax ahead of the products. Hence
// amax by atomicMaxOf after the products, and the dO scale's max by a workgroup tree over sh_s.

/**
 * Workgroup memory (bytes) of a pass with R owned rows and C-row steps: the f16 step buffer [2C][LD]
 * (the other side's two tiles; the owned rows' left operands pass through it into registers, so R
 * costs no [R][LD] copy), the strips' f32 S (and dP) [R][LDS] and f16 P (and dS) [R][LDP], and
 * bwd_dkv's per-step LSE and D of C query rows (f32).
 */
function sharedBytes(pass: AttentionPass, cfg: AttentionConfig, R: number, C: number): number {
  const ld = cfg.headDim + PAD16;
  const [lds, ldp] = [C + PAD32, C + PAD16];
  const f32Strips = pass === "fwd" ? 1 : 2; // S; S and dP
  const f16Strips = pass === "bwd_dkv" ? 2 : 1; // P (bwd_dq's dS in its place); P and dS
  return 2 * (2 * C * ld + f16Strips * R * ldp) + 4 * (f32Strips * R * lds + (pass === "bwd_dkv" ? 2 * C : 0));
}

/**
 * The default tiles: the largest R·C that fits the workgroup memory (sharedBytes: the owned rows
 * cost only their strips, their operands being in registers), then the squarer (a 16-column step
 * gives each subgroup one result per product: little reuse of its left fragment), then more
 * subgroups; at most 256 invocations, no tile much longer than the sequence, and no subgroup strip
 * straddling two of holdLeft's 2C-row chunks. E.g. head_dim 64 on 48 KiB with 16×16×16 products
 * and 32-wide subgroups: fwd 64×64, bwd_dq and bwd_dkv 64×32 (4 subgroups).
 */
export function attentionSgmmTiles(cfg: AttentionConfig, pass: AttentionPass, mma: MmaShape, subgroupSize: number): AttentionSgmmTiles {
  const budget = cfg.maxSharedBytes ?? 16384;
  const step = lcm(lcm(mma.N, mma.K), Math.max(1, subgroupSize / mma.M));
  const seq = nextPow2(cfg.seqLen);
  let best: AttentionSgmmTiles | undefined;
  for (const subgroups of [8, 4, 2, 1]) {
    for (const cols of [128, 64, 32, 16, 8].filter((c) => c % step === 0).concat(step)) {
      const R = subgroups * mma.M;
      if (subgroups * subgroupSize > MAX_INVOCATIONS || sharedBytes(pass, cfg, R, cols) > budget) continue;
      if ((R > seq && subgroups > 1) || (cols > seq && cols > step) || (R > 2 * cols && (2 * cols) % mma.M !== 0)) continue;
      const score = (t: AttentionSgmmTiles) => t.subgroups * mma.M * t.cols * 1e6 + Math.min(t.subgroups * mma.M, t.cols) * 1e3 + t.subgroups;
      if (!best || score({ subgroups, cols }) > score(best)) best = { subgroups, cols };
    }
  }
  if (!best) throw new Error(`attention (subgroup matrices): no tile fits ${budget} bytes of workgroup memory at head_dim ${cfg.headDim}`);
  return best;
}

/** The MMA shape and subgroup size this adapter would run the kernels with, or why it cannot. */
export function attentionSgmmShape(caps: AttentionSgmmCaps): { mma: MmaShape; subgroupSize: number } | string {
  if (caps.isCpu) return "CPU adapter";
  if (!caps.f16 || !caps.subgroups) return "no f16 or subgroups";
  const mma = mmaShapesFor(caps)[0];
  if (!mma) return "no f16 → f32 subgroup matrix";
  // Subgroup s must be invocations s·size.. of the workgroup: a fixed subgroup size.
  const size = caps.subgroupMinSize ?? 0;
  if (!size || size !== caps.subgroupMaxSize) return `subgroup size not fixed (${caps.subgroupMinSize}..${caps.subgroupMaxSize})`;
  if (size % mma.M !== 0 || !isPow2(size) || !isPow2(mma.M)) return `subgroup size ${size} is not a power-of-two multiple of mma.M ${mma.M}`;
  return { mma, subgroupSize: size };
}

/** Whether attentionSgmm can generate cfg's three passes on an adapter with `caps`. */
export function attentionSgmmSupported(cfg: AttentionConfig, caps: AttentionSgmmCaps): boolean {
  const shape = attentionSgmmShape(caps);
  if (typeof shape === "string") return false;
  const { mma, subgroupSize } = shape;
  if (cfg.headDim % mma.K !== 0 || cfg.headDim % mma.N !== 0 || cfg.headDim % 4 !== 0) return false;
  try {
    // With cfg.maxSharedBytes, the budget attentionSgmm will use (pass the device's there).
    for (const pass of ["fwd", "bwd_dq", "bwd_dkv"] as const) attentionSgmmTiles(cfg, pass, mma, subgroupSize);
    return true;
  } catch {
    return false;
  }
}

/**
 * Generates one attention pass on subgroup matrices: the bindings, grid and results of
 * attention(cfg, pass) (see AttentionPass), products on mma-shaped f16 tiles. `tiles` overrides
 * the default (attentionSgmmTiles). cfg.tiles and cfg.subgroupSize (FMA settings) are not read.
 */
export function attentionSgmm(cfg: AttentionConfig, pass: AttentionPass, mma: MmaShape, subgroupSize: number, tiles?: AttentionSgmmTiles): KernelSource {
  const { batch, seqLen: T, heads: H, kvHeads: HKV, headDim: DH, causal, fp8 } = cfg;
  const { M: MM, N: MN, K: MK } = mma;
  const SG = subgroupSize;
  const t = tiles ?? attentionSgmmTiles(cfg, pass, mma, SG);
  const R = t.subgroups * MM;
  const C = t.cols;
  const NT = t.subgroups * SG;
  const LPR = SG / MM; // invocations per strip row in the elementwise phases
  check(H % HKV === 0, `attention: heads ${H} not a multiple of kv_heads ${HKV}`);
  check(isPow2(SG) && isPow2(MM) && SG % MM === 0, `attention (subgroup matrices): subgroup size ${SG} must be a power-of-two multiple of mma.M ${MM}`);
  check(DH % MK === 0 && DH % MN === 0 && DH % 4 === 0, `attention (subgroup matrices): head_dim ${DH} must be a multiple of mma.K ${MK}, mma.N ${MN} and 4`);
  check(C % MN === 0 && C % MK === 0 && C % LPR === 0, `attention (subgroup matrices): cols ${C} must be a multiple of mma.N, mma.K and ${LPR}`);
  check(NT <= 1024, `attention (subgroup matrices): ${NT} invocations per workgroup`);
  check(R * (C + PAD32) >= NT, `attention (subgroup matrices): the dO max tree needs ${NT} f32 of sh_s`);
  check(R <= 2 * C || (2 * C) % MM === 0, `attention (subgroup matrices): strips of ${MM} rows straddle the ${2 * C}-row chunks of the step buffer`);
  const budget = cfg.maxSharedBytes ?? 16384;
  const bytes = sharedBytes(pass, cfg, R, C);
  check(bytes <= budget, `attention (subgroup matrices): tiles ${JSON.stringify(t)} need ${bytes} bytes of workgroup memory (budget ${budget})`);
  const packed = fp8 && !fp8.f32Inputs ? fp8 : undefined;
  const dkv = pass === "bwd_dkv";

  const b = new WgslBuilder(`${cfg.name}_${pass}`, `attention ${pass} (subgroup matrices ${MM}x${MN}x${MK}) B=${batch} T=${T} H=${H}/${HKV} Dh=${DH}${fp8 ? " fp8dpa" : ""}`);
  b.enable("f16").enable("subgroups").enable("chromium_experimental_subgroup_matrix");
  b.constant("T", "u32", T).constant("H", "u32", H).constant("HKV", "u32", HKV).constant("DH", "u32", DH);
  b.constant("GROUP", "u32", H / HKV).constant("SCALE", "f32", cfg.scale);
  b.constant("LD", "u32", DH + PAD16).constant("LDS", "u32", C + PAD32).constant("LDP", "u32", C + PAD16);
  const inT = packed ? "u32" : "f32";
  const codecs: Partial<Record<Fp8Format, Codec>> = {};
  const codec = (fmt: Fp8Format): Codec => (codecs[fmt] ??= fp8Codec(b, fmt, true));

  const amaxIdx = bindAttention(b, pass, fp8, inT, "f32");

  // Workgroup memory: the step buffer, two tiles of C rows, f16 [2C][LD] (K and V; Q and dO for
  // bwd_dkv); the strips' f32 S/dP [R][LDS] and f16 P/dS [R][LDP]; bwd_dkv's LSE and D of the step's
  // C query rows. Every pass holds its own rows' left operands (Q, dO; K, V for bwd_dkv) as register
  // fragments for the whole kernel, staged through the step buffer once (2C rows at a time, holdLeft):
  // that memory buys larger tiles, and saves a fragment load per MMA step.
  b.workgroupArray("sh_t", "f16", 2 * C * (DH + PAD16));
  const second = `${C * (DH + PAD16)}u + `; // offset of the step buffer's second tile
  b.workgroupArray("sh_s", "f32", R * (C + PAD32)).workgroupArray("sh_p", "f16", R * (C + PAD16));
  if (pass !== "fwd") b.workgroupArray("sh_dp", "f32", R * (C + PAD32));
  if (dkv) b.workgroupArray("sh_ds", "f16", R * (C + PAD16)).workgroupArray("lse_s", "f32", C).workgroupArray("d_s", "f32", C);

  const QW = H * DH;
  const KW = HKV * DH;
  const left = `subgroup_matrix_left<f16, ${MK}, ${MM}>`;
  const right = `subgroup_matrix_right<f16, ${MN}, ${MK}>`;
  const result = `subgroup_matrix_result<f32, ${MN}, ${MM}>`;
  const indent = (ls: string[], n = 1): string[] => ls.map((l) => `${"  ".repeat(n)}${l}`);
  const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

  /** Global index of element d of row tt of one head of a [B·T, width] tensor. */
  const at = (tt: string, width: number, head: string, d: string) => `(bb * T + ${tt}) * ${width}u + ${head} * DH + ${d}`;
  /** The four f32 values at (tt, c4..c4+3) of an f32 tensor. */
  const load4 = (src: string, idx: string): string => `vec4<f32>(${[0, 1, 2, 3].map((q) => `${src}[${idx} + ${q}u]`).join(", ")})`;
  /**
   * Stages rows t0..t0+rows of one head of `src` into `dst` (at offset `base`) as f16 (zeros past T),
   * f32 values times `mul`; FP8 codes (packed inputs, which take no `mul`) straight to f16 a word at a
   * time (gemm-io.ts's branch-free word decoder, exact).
   */
  const stage = (dst: string, base: string, src: string, rows: number, t0: string, width: number, head: string, fmt?: Fp8Format, mul?: string): string[] => [
    `for (var e = lidx; e < ${(rows * DH) / 4}u; e += ${NT}u) {`,
    `  let rr = e / ${DH / 4}u; let c4 = (e % ${DH / 4}u) * 4u; let tt = ${t0} + rr;`,
    `  var h4 = vec4<f16>();`,
    fmt
      ? `  if (tt < T) { h4 = ${fp8WordDecoder(b, FP8_FORMATS[fmt], "f16")}(${src}[(${at("tt", width, head, "c4")}) / 4u]); }`
      : `  if (tt < T) { h4 = vec4<f16>(${load4(src, at("tt", width, head, "c4"))}${mul ? ` * ${mul}` : ""}); }`,
    ...[0, 1, 2, 3].map((q) => `  ${dst}[${base}rr * LD + c4 + ${q}u] = h4[${q}];`),
    `}`,
  ];
  /** 2^E from max |x| over `rows` rows from t0 of the heads `heads` of `src` (f32), over the workgroup, into `out`. */
  const rowsAmax = (out: string, src: string, t0: string, rows: string, width: number, heads: [string, string]): string[] => [
    `var dmax = 0.0;`,
    `for (var hh = ${heads[0]}; hh < ${heads[1]}; hh++) {`,
    `  for (var e = lidx; e < ${rows} * ${DH / 4}u; e += ${NT}u) {`,
    `    let tt = ${t0} + e / ${DH / 4}u; let c4 = (e % ${DH / 4}u) * 4u;`,
    `    let x = abs(${load4(src, at("tt", width, "hh", "c4"))});`,
    `    dmax = max(dmax, max(max(x.x, x.y), max(x.z, x.w)));`,
    `  }`,
    `}`,
    // A tree over sh_s (not yet in use; R·LDS ≥ the workgroup's invocations). Not subgroupMax: on the
    // H100 a subgroupMax ahead of the matrix products made every backward product wrong.
    `sh_s[lidx] = dmax;`,
    `workgroupBarrier();`,
    ...range(Math.log2(NT)).flatMap((k) => [`if (lidx < ${NT >> (k + 1)}u) { sh_s[lidx] = max(sh_s[lidx], sh_s[lidx + ${NT >> (k + 1)}u]); }`, `workgroupBarrier();`]),
    `let wg_dmax = sh_s[0];`,
    `workgroupBarrier();`,
    // 2^E with max·2^E in [1, 2), E ≤ 100 (an all-zero or denormal dO must not make it infinite).
    `let ${out} = ldexp(1.0, min(1 - frexp(wg_dmax).exp, 100));`,
  ];

  const loadL = (arr: string, major: string, off: string, stride: string) => `subgroupMatrixLoad<${left}, ${major}>(&${arr}, ${off}, ${stride})`;
  const loadR = (arr: string, major: string, off: string, stride: string) => `subgroupMatrixLoad<${right}, ${major}>(&${arr}, ${off}, ${stride})`;
  /** The left fragment of k-step s: a register fragment, or loaded from a copy in workgroup memory. */
  type Left = (s: number) => string;
  const regLeft = (prefix: string): Left => (s) => `${prefix}${s}`;
  const sharedLeft = (arr: string, stride: string): Left => (s) => loadL(arr, "row_major", `sr * ${stride} + ${s * MK}u`, stride);
  /** Per-subgroup results `names` += left(s)·right(s, f) over `steps` k-steps (unrolled: register fragments are indexed statically). */
  const mmaSteps = (names: string[], steps: number, leftOf: Left, rightAt: (s: number, f: number) => string): string[] =>
    range(steps).flatMap((s) => [
      "{",
      `  let fa = ${leftOf(s)};`,
      ...names.flatMap((n, f) => [`  let fb${f} = ${rightAt(s, f)};`, `  ${n} = subgroupMatrixMultiplyAccumulate(fa, fb${f}, ${n});`]),
      "}",
    ]);
  /**
   * Register fragments `prefix`0.. (head_dim/mma.K left fragments) of this subgroup's rows of one
   * head of `src`: the workgroup's R rows from row `t0` (query rows of head `head` in a [B·T, QW]
   * tensor, or key rows of kv head `head` in a [B·T, KW] one), staged through sh_t 2C rows at a time
   * as `stage` does (FP8 codes of `fmt` decoded, times `mul`). Ends with a barrier: sh_t is free.
   */
  const holdLeft = (prefix: string, src: string, t0: string, width: number, head: string, fmt?: Fp8Format, mul?: string): string[] => {
    const chunk = Math.min(R, 2 * C);
    const out = range(DH / MK).map((s) => `var ${prefix}${s}: ${left};`);
    for (let r0 = 0; r0 < R; r0 += chunk) {
      const loads = range(DH / MK).map((s) => `${prefix}${s} = ${loadL("sh_t", "row_major", `(sr - ${r0}u) * LD + ${s * MK}u`, "LD")};`);
      out.push(...stage("sh_t", "", src, chunk, `${t0} + ${r0}u`, width, head, fmt, mul), "workgroupBarrier();");
      // Subgroup-uniform branch: a strip lies in one chunk.
      out.push(...(chunk < R ? [`if (sr >= ${r0}u && sr < ${r0 + chunk}u) {`, ...indent(loads), "}"] : loads), "workgroupBarrier();");
    }
    return out;
  };
  /** This subgroup's strip of A·Bᵀ (A: its rows, by `leftOf`; B: C rows of sh_t at `bBase`) into `dst` (f32). */
  const stripABt = (dst: string, leftOf: Left, bBase: string, tag: string): string[] => {
    const names = range(C / MN).map((f) => `${tag}${f}`);
    return [
      "{",
      ...indent([
        // Zeroed explicitly every step: lavapipe kept a loop-body `var`'s value from the previous iteration.
        ...names.map((n) => `var ${n} = ${result}();`),
        ...mmaSteps(names, DH / MK, leftOf, (s, f) => loadR("sh_t", "col_major", `${bBase}${f * MN}u * LD + ${s * MK}u`, "LD")),
        ...names.map((n, f) => `subgroupMatrixStore<row_major>(&${dst}, sr * LDS + ${f * MN}u, ${n}, LDS);`),
      ]),
      "}",
    ];
  };
  /** Accumulators `acc` (head_dim/mma.N results) += strip of `p` (f16 [R][LDP]) · the C rows of sh_t at `bBase`. */
  const accumulate = (acc: string, p: string, bBase: string): string[] =>
    mmaSteps(
      range(DH / MN).map((f) => `${acc}${f}`),
      C / MK,
      sharedLeft(p, "LDP"),
      (s, f) => loadR("sh_t", "row_major", `${bBase}${s * MK}u * LD + ${f * MN}u`, "LD"),
    );
  /** For each of this lane's strip elements (row `rr`, column `c` of the step): `inner`. */
  const strip = (inner: string[]): string[] => [
    `for (var x = 0u; x < ${C / LPR}u; x++) {`,
    `  let c = part + x * ${LPR}u; let e = (sr + rr) * LDS + c; let ep = (sr + rr) * LDP + c;`,
    ...indent(inner),
    `}`,
  ];
  /** Sum over the lanes of one strip row (consecutive invocations: xor shuffles, a fixed order). */
  const rowSum = (v: string): string[] => range(Math.log2(LPR)).map((s) => `${v} = ${v} + subgroupShuffleXor(${v}, ${1 << s}u);`);
  /**
   * Writes accumulators `acc` times `factor` to rows rowBase + sr + · of dst, through sh_s in chunks
   * of C columns (one store per result, then the lanes copy out); uniform control flow (barriers).
   */
  const storeAcc = (acc: string, dst: string, width: number, head: string, rowBase: string, factor: string): string[] => {
    const per = C / MN;
    const out: string[] = [];
    for (let c0 = 0; c0 < DH / MN; c0 += per) {
      const fs = range(Math.min(per, DH / MN - c0)).map((i) => c0 + i);
      out.push(
        ...fs.map((f, i) => `subgroupMatrixStore<row_major>(&sh_s, sr * LDS + ${i * MN}u, ${acc}${f}, LDS);`),
        "workgroupBarrier();",
        `for (var x = 0u; x < ${(fs.length * MN) / LPR}u; x++) {`,
        `  let c = part + x * ${LPR}u; let tt = ${rowBase} + sr + rr;`,
        `  if (tt < T) { ${dst}[${at("tt", width, head, `${c0 * MN}u + c`)}] = sh_s[(sr + rr) * LDS + c] * ${factor}; }`,
        `}`,
        "workgroupBarrier();",
      );
    }
    return out;
  };
  const fq = (x: string, fmt: Fp8Format, s: string): string => `${codec(fmt).dec(codec(fmt).enc(`${x} * ${s}`))}`;
  const valid = (qi: string, kj: string): string => `${kj} < T && ${qi} < T${causal ? ` && ${kj} <= ${qi}` : ""}`;
  const sinv = (which: "q" | "k" | "v" | "dO"): string => (packed ? `scales[${packed.scaleInv[which]}]` : "1.0");
  const accDecl = (acc: string) => range(DH / MN).map((f) => `var ${acc}${f}: ${result};`);

  const body: string[] = [
    `let sr = sg * ${MM}u; let rr = lane / ${LPR}u; let part = lane % ${LPR}u;`,
    `let sscale = SCALE * ${sinv("q")} * ${sinv("k")};`,
    `var amx = 0.0;`,
  ];
  if (fp8) body.push(`let s_p = scales[${fp8.scale.p}]; let s_ds = scales[${fp8.scale.dS}];`);
  const e4 = packed && "e4m3";
  const e5 = packed && "e5m2";
  // The dO operand's factor: scale_inv for codes, else 1/2^E of the dynamic scale.
  const doMul = packed ? undefined : "dscale";
  const doFactor = packed ? sinv("dO") : "(1.0 / dscale)";
  // dS as staged: its FP8 code value, or dS·2^E; and the factor that undoes that.
  const dsStage = (ds: string) => (fp8 ? fq(ds, "e5m2", "s_ds") : `${ds} * dscale`);
  const dsFactor = fp8 ? "(1.0 / s_ds)" : "(1.0 / dscale)";
  const kvTiles = causal ? `(min(T, q0 + ${R}u) + ${C - 1}u) / ${C}u` : `${Math.ceil(T / C)}u`;

  if (pass === "fwd") {
    const loop = (withV: boolean, inner: string[]): string[] => [
      `for (var kt = 0u; kt < ${kvTiles}; kt++) {`,
      `  let k0 = kt * ${C}u;`,
      `  workgroupBarrier();`,
      ...indent(stage("sh_t", "", "k", C, "k0", KW, "g", e4)),
      ...(withV ? indent(stage("sh_t", second, "v", C, "k0", KW, "g", e4)) : []),
      `  workgroupBarrier();`,
      ...indent(stripABt("sh_s", regLeft("qf"), "", "s")),
      `  workgroupBarrier();`,
      ...indent(inner),
      `}`,
    ];
    const score = [`let s = select(${NEG}, sh_s[e] * sscale, ${valid("i", "k0 + c")});`];
    body.push(
      `let bh = wid.y; let bb = bh / H; let h = bh % H; let g = h / GROUP;`,
      `let q0 = wid.x * ${R}u; let i = q0 + sr + rr;`,
      ...holdLeft("qf", "q", "q0", QW, "h", e4),
      // Pass 1: this lane's running max and sum over its columns of the row, then over the row's lanes.
      `var m = ${NEG}; var l = 0.0;`,
      ...loop(false, [
        `var tmax = ${NEG};`,
        ...strip([...score, `tmax = max(tmax, s);`]),
        `let m_new = max(m, tmax);`,
        `var tsum = 0.0;`,
        // Masked logits count 0 even while this lane has seen no valid one (m_new = NEG).
        ...strip([...score, `tsum += select(0.0, exp(s - m_new), ${valid("i", "k0 + c")});`]),
        `l = l * exp(m - m_new) + tsum;`,
        `m = m_new;`,
      ]),
      ...range(Math.log2(LPR)).flatMap((s) => [
        `{`,
        `  let m2 = subgroupShuffleXor(m, ${1 << s}u); let l2 = subgroupShuffleXor(l, ${1 << s}u); let mx = max(m, m2);`,
        `  l = l * exp(m - mx) + l2 * exp(m2 - mx); m = mx;`,
        `}`,
      ]),
      `let lse_r = m + log(l);`,
      // Pass 2: P = exp(S − lse), already normalised; O += P·V.
      ...accDecl("oacc"),
      ...loop(true, [
        ...strip([
          ...score,
          `let p = select(0.0, exp(s - lse_r), ${valid("i", "k0 + c")});`,
          ...(fp8 ? [`amx = max(amx, p);`, `sh_p[ep] = f16(${fq("p", "e4m3", "s_p")});`] : [`sh_p[ep] = f16(p);`]),
        ]),
        `workgroupBarrier();`,
        ...accumulate("oacc", "sh_p", second),
      ]),
      `if (i < T && part == 0u) { lse[bh * T + i] = lse_r; }`,
      ...storeAcc("oacc", "o", QW, "h", "q0", `${sinv("v")}${fp8 ? " / s_p" : ""}`),
    );
  } else if (pass === "bwd_dq") {
    body.push(
      `let bh = wid.y; let bb = bh / H; let h = bh % H; let g = h / GROUP;`,
      `let q0 = wid.x * ${R}u; let i = q0 + sr + rr; let ic = min(i, T - 1u);`,
      // D = rowsum(dO⊙O) in f32 from storage (exact FP8 values), split over the row's lanes.
      `var dr = 0.0;`,
      `for (var x = 0u; x < ${DH / LPR}u; x++) {`,
      `  let d = part + x * ${LPR}u; let idx = ${at("ic", QW, "h", "d")};`,
      `  let dov = ${packed ? `${codec("e5m2").dec(`fp8_unpack(dout[idx / 4u], idx % 4u)`)} * ${sinv("dO")}` : "dout[idx]"};`,
      `  dr += select(0.0, dov * o[idx], i < T);`,
      `}`,
      ...rowSum("dr"),
      `if (i < T && part == 0u) { delta[bh * T + i] = dr; }`,
      `let lse_r = select(0.0, lse[bh * T + ic], i < T);`,
      ...(packed ? [] : rowsAmax("dscale", "dout", "q0", `min(${R}u, T - q0)`, QW, ["h", "h + 1u"])),
      ...holdLeft("qf", "q", "q0", QW, "h", e4),
      ...holdLeft("df", "dout", "q0", QW, "h", e5, doMul),
      `let dpscale = ${doFactor} * ${sinv("v")};`,
      ...accDecl("dqa"),
      `for (var kt = 0u; kt < ${kvTiles}; kt++) {`,
      `  let k0 = kt * ${C}u;`,
      `  workgroupBarrier();`,
      ...indent([...stage("sh_t", "", "k", C, "k0", KW, "g", e4), ...stage("sh_t", second, "v", C, "k0", KW, "g", e4)]),
      `  workgroupBarrier();`,
      ...indent([...stripABt("sh_s", regLeft("qf"), "", "s"), ...stripABt("sh_dp", regLeft("df"), second, "dp")]),
      `  workgroupBarrier();`,
      ...indent(
        strip([
          `let p = select(0.0, exp(sh_s[e] * sscale - lse_r), ${valid("i", "k0 + c")});`,
          `let ds = p * (sh_dp[e] * dpscale - dr);`,
          `sh_p[ep] = f16(${dsStage("ds")});`,
        ]),
      ),
      `  workgroupBarrier();`,
      ...indent(accumulate("dqa", "sh_p", "")),
      `}`,
      ...storeAcc("dqa", "dq", QW, "h", "q0", `SCALE * ${sinv("k")} * ${dsFactor}`),
    );
  } else {
    // One workgroup per R key rows of one kv head; it visits every query head of its GQA group.
    const q0Start = causal ? `(k0 / ${C}u) * ${C}u` : "0u";
    body.push(
      `let bg = wid.y; let bb = bg / HKV; let g = bg % HKV;`,
      `let k0 = wid.x * ${R}u; let j = k0 + sr + rr;`,
      ...(packed ? [] : rowsAmax("dscale", "dout", q0Start, `(T - ${q0Start})`, QW, ["g * GROUP", "(g + 1u) * GROUP"])),
      ...holdLeft("kf", "k", "k0", KW, "g", e4),
      ...holdLeft("vf", "v", "k0", KW, "g", e4),
      `let dpscale = ${doFactor} * ${sinv("v")};`,
      ...accDecl("dka"),
      ...accDecl("dva"),
      `for (var hh = 0u; hh < GROUP; hh++) {`,
      `  let h = g * GROUP + hh; let bh = bb * H + h;`,
      `  for (var q0 = ${q0Start}; q0 < T; q0 += ${C}u) {`,
      `    workgroupBarrier();`,
      ...indent([...stage("sh_t", "", "q", C, "q0", QW, "h", e4), ...stage("sh_t", second, "dout", C, "q0", QW, "h", e5, doMul)], 2),
      `    for (var e = lidx; e < ${C}u; e += ${NT}u) { let ii = min(q0 + e, T - 1u); lse_s[e] = lse[bh * T + ii]; d_s[e] = delta[bh * T + ii]; }`,
      `    workgroupBarrier();`,
      ...indent([...stripABt("sh_s", regLeft("kf"), "", "s"), ...stripABt("sh_dp", regLeft("vf"), second, "dp")], 2),
      `    workgroupBarrier();`,
      ...indent(
        strip([
          `let p = select(0.0, exp(sh_s[e] * sscale - lse_s[c]), ${valid("q0 + c", "j")});`,
          `let ds = p * (sh_dp[e] * dpscale - d_s[c]);`,
          ...(fp8
            ? [`amx = max(amx, abs(ds));`, `sh_p[ep] = f16(${fq("p", "e4m3", "s_p")});`, `sh_ds[ep] = f16(${dsStage("ds")});`]
            : [`sh_p[ep] = f16(p);`, `sh_ds[ep] = f16(${dsStage("ds")});`]),
        ]),
        2,
      ),
      `    workgroupBarrier();`,
      ...indent([...accumulate("dva", "sh_p", second), ...accumulate("dka", "sh_ds", "")], 2),
      `  }`,
      `}`,
      `workgroupBarrier();`,
      ...storeAcc("dka", "dk", KW, "g", "k0", `SCALE * ${sinv("q")} * ${dsFactor}`),
      ...storeAcc("dva", "dv", KW, "g", "k0", `${doFactor}${fp8 ? " / s_p" : ""}`),
    );
  }
  if (amaxIdx !== undefined) body.push(...atomicMaxOf(b, "bitcast<u32>(amx)", `amax[${amaxIdx}]`, true));
  // Offsets depend on subgroup_id, which the uniformity analysis cannot prove uniform within a
  // subgroup (it is): the filter is a function attribute, as the builder writes no directives.
  b.helper(
    "attention_sgmm",
    [
      "@diagnostic(off, chromium.subgroup_matrix_uniformity)",
      "fn attention_sgmm(lidx: u32, sg: u32, lane: u32, wid: vec3<u32>) {",
      ...indent(body),
      "}",
    ].join("\n"),
  );
  const grid: [number, number, number] = dkv ? [Math.ceil(T / R), batch * HKV, 1] : [Math.ceil(T / R), batch * H, 1];
  return finish(b, NT, ["attention_sgmm(lidx, sgid, sglane, wid);"], grid, ["@builtin(subgroup_id) sgid: u32", "@builtin(subgroup_invocation_id) sglane: u32"]);
}
