// The GEMM generator: one typed config → WGSL for C = op(A)·op(B) with FP8/bf16/f32 operands, an
// f32 accumulator and a fused epilogue (scales, bias, activation, residual, cast, amax). Two paths,
// a tiled FMA path every adapter runs and a subgroup-matrix (tensor-core) path, share all I/O code.
// The paths live in gemm-fma.ts and gemm-sgmm.ts, their shared I/O in gemm-io.ts; this file holds the
// config, the tile choice per shape and adapter, and the generator that puts them together.
import { type BindingSpec, WgslBuilder } from "../wgsl.js";
import { declareBindings, epilogueHelper, isFp8, loaderHelper, operands, preExpHelper, preScaleStart, type Prec } from "./gemm-io.js";
import { fmaDirectBody, fmaSharedBody, fmaThreads } from "./gemm-fma.js";
import { sgmmHelper, sgmmSharedBytes, sgmmThreads } from "./gemm-sgmm.js";

/** bf16: top half of an f32, 2 per u32. FP8: 4 codes per u32, element i in byte i % 4 (flat index). */
export type GemmOperandType = "f32" | "bf16" | "e4m3" | "e5m2";
export type GemmOutType = GemmOperandType;
export type GemmPath = "fma" | "subgroup-matrix";

/** Applied in this order after the scales: bias[n] → act → + residual[m, n]. */
export interface GemmEpilogue {
  bias?: boolean;
  act?: "gelu" | "silu" | "tanh" | "relu";
  residual?: boolean;
}

/** A tensor-core shape M×N×K (f16 components, f32 result), as the adapter reports it. */
export interface MmaShape {
  M: number;
  N: number;
  K: number;
}

/**
 * Tile parameters. Both paths: a workgroup computes a bm×bn block of C, stepping K by bk.
 * FMA: each invocation computes a tm×tn block (tn a multiple of 4), from operand tiles staged in
 * workgroup memory ("shared", GPUs) or loaded straight from storage ("direct", CPU adapters).
 * Subgroup-matrix: sgRows×sgCols subgroups of `subgroupSize` invocations, each computing a
 * (bm/sgRows)×(bn/sgCols) block of mma-shaped results.
 */
export interface GemmTile {
  bm: number;
  bn: number;
  bk: number;
  tm: number;
  tn: number;
  fmaLoads: "shared" | "direct";
  mma: MmaShape;
  sgRows: number;
  sgCols: number;
  subgroupSize: number;
  /** Subgroup-matrix workgroup-memory copy of the operand tiles: rows of k, or as stored (see SharedLayout). */
  sharedLayout: "k-major" | "storage";
  /** f16 elements added to each row of those copies (bank spreading); default 0 k-major, 8 storage. */
  pad: number;
  /** Subgroup-matrix copies per operand: 1, or 2 (double-buffered, next K step's loads in flight during the MMAs). */
  stages: 1 | 2;
}

export interface GemmConfig {
  name: string;
  M: number;
  N: number;
  K: number;
  /** A stored [K, M] instead of [M, K]. */
  transA: boolean;
  /** B stored [N, K] instead of [K, N] (NT: the forward linear X·Wᵀ). */
  transB: boolean;
  a: GemmOperandType;
  b: GemmOperandType;
  /** Multiply the accumulator by scale_a[0] (A's per-tensor scale_inv). */
  scaleA?: boolean;
  scaleB?: boolean;
  /** FP8 out: value·scale_out[0] encoded saturating RNE, whole u32 words; amax of the unscaled value. */
  out: GemmOutType;
  epilogue?: GemmEpilogue;
  /** C += result (f32 or bf16 output). */
  accumulate?: boolean;
  /**
   * bf16 × bf16 on the subgroup-matrix path: each operand is multiplied by 2^e before rounding to
   * f16, e from its max |x| (bindings amax_a, amax_b: the f32 bits, e.g. runtime absmaxBits) so the
   * largest lands in [2^14, 2^15), and the accumulator by 2^-(e_a + e_b) after. Every bf16 value
   * within 2^-29 of its tensor's max is then exact in f16 (bf16 has 8 significant bits, f16 11);
   * smaller ones round to f16 subnormals, off by ≤ 2^-39 of the max.
   */
  preScale?: boolean;
  path: GemmPath;
  tile?: Partial<GemmTile>;
  /** One-line provenance printed at the top of the WGSL (e.g. the .fog line). */
  origin?: string;
}

/** Structurally the same as every generator's KernelSource. */
export interface GemmKernel {
  wgsl: string;
  bindings: BindingSpec[];
  workgroups: [number, number, number];
  entryPoint: "main";
  /** The config it was generated from (a plan's GEMM shapes are listed from it, e.g. to tune them). */
  gemm: GemmConfig;
}

/** The part of the device capabilities (runtime/device.ts GpuCaps) the path choice reads. */
export interface GemmCaps {
  f16: boolean;
  subgroups: boolean;
  subgroupMatrix: { componentType: string; resultComponentType: string; M: number; N: number; K: number }[];
}

/** The part of GpuCaps the tile choice reads; every field optional (absent: assume a GPU with WebGPU's minimum limits). */
export interface GemmTileCaps {
  isCpu?: boolean;
  maxComputeWorkgroupStorageSize?: number;
  maxComputeInvocationsPerWorkgroup?: number;
  subgroupMinSize?: number;
  subgroupMaxSize?: number;
  subgroupMatrix?: GemmCaps["subgroupMatrix"];
}

/** The f16 → f32 tensor-core shapes an adapter offers, the preferred (16×16×16) first. */
export function mmaShapesFor(caps: Pick<GemmCaps, "subgroupMatrix">): MmaShape[] {
  const shapes = caps.subgroupMatrix
    .filter((c) => c.componentType === "f16" && c.resultComponentType === "f32")
    .map(({ M, N, K }) => ({ M, N, K }));
  const score = (s: MmaShape) => (s.M === 16 && s.N === 16 && s.K === 16 ? 0 : 1);
  return shapes.sort((x, y) => score(x) - score(y));
}

/** Paths this adapter runs, fastest first. The FMA path runs everywhere. */
export function gemmPathsFor(caps: GemmCaps): GemmPath[] {
  return caps.f16 && caps.subgroups && mmaShapesFor(caps).length > 0 ? ["subgroup-matrix", "fma"] : ["fma"];
}

/** WebGPU's default maxComputeWorkgroupStorageSize, what a device without raised limits has. */
const MIN_WORKGROUP_STORAGE = 16384;
/** Without caps, GEMMs below this many multiply-adds are assumed small enough for the direct FMA variant. */
const SMALL_GEMM_MACS = 2 ** 30;

/**
 * The default tile for cfg's shape and path on an adapter (fields of cfg.tile are not read).
 * - FMA on a CPU adapter (caps.isCpu): the direct variant, 8×32 tiles of 8 invocations (one SIMD
 *   row of llvmpipe's 8 lanes) with 8×4 blocks: A's loads are the same for every lane (llvmpipe
 *   loads them once; a lane-varying load is a per-lane gather), 8 FMAs per gathered B value.
 *   16×4 blocks ran ~10 % faster but llvmpipe's JIT takes twice as long over their unrolled bodies
 *   (fog-flash-tiny's 78 kernels: 54.8 s against 32.8 s on a cold shader cache, GEMM time per step
 *   316 against 347 ms; docs/training.md); 4×4 blocks were 28 % slower. Without caps, GEMMs under
 *   2^30 multiply-adds get it too.
 * - FMA on a GPU: the shared variant, 128×64 tiles of 8×4 per invocation when that fills the GPU
 *   with workgroups, else 64×64 of 4×4.
 * - Subgroup matrices: 256×128 tiles of 8×2 subgroups for big grids, else 128×128 of 4×2 (2×4
 *   results each), bk 16, padded k-major copies.
 */
export function chooseGemmTile(cfg: Pick<GemmConfig, "M" | "N" | "K" | "path" | "transA" | "transB">, caps: GemmTileCaps = {}): GemmTile {
  const maxShared = caps.maxComputeWorkgroupStorageSize ?? MIN_WORKGROUP_STORAGE;
  const mma = (caps.subgroupMatrix && mmaShapesFor({ subgroupMatrix: caps.subgroupMatrix })[0]) || { M: 16, N: 16, K: 16 };
  const subgroupSize = caps.subgroupMinSize && caps.subgroupMinSize === caps.subgroupMaxSize ? caps.subgroupMinSize : 32;
  const base = { bk: 16, tm: 4, tn: 4, fmaLoads: "shared" as const, mma, sgRows: 2, sgCols: 2, subgroupSize, sharedLayout: "k-major" as const, pad: 0, stages: 1 as const };
  // Measured on the H100 at 4096³ and 8192×6144×1024 (docs/perf.md): 4×2 subgroups, bk 16 and k-major
  // copies padded by 8 f16 won (~68 TFLOP/s, against ~39 unpadded and ~39 for 2×2); 17 KiB of
  // workgroup memory, so 2×2 subgroups (12.5 KiB) where the device keeps WebGPU's 16 KiB default.
  // Third session, same H100, `--tune` at 4096³: 256×128 tiles of 8×2 subgroups 120.9 TFLOP/s
  // (128×256 of 4×4: 120.4; double-buffered copies 64–86): the default where the grid still has
  // ≥ 128 of them and the device takes 512 invocations and their 18 KiB.
  if (cfg.path === "subgroup-matrix") {
    const t: GemmTile = { ...base, bm: 128, bn: 128, sgRows: 4, sgCols: 2, pad: 8 };
    const big: GemmTile = { ...t, bm: 256, sgRows: 8 };
    const bigFits =
      Math.ceil(cfg.M / 256) * Math.ceil(cfg.N / 128) >= 128 &&
      sgmmThreads(big) <= (caps.maxComputeInvocationsPerWorkgroup ?? 256) &&
      sgmmSharedBytes(cfg, big) <= maxShared;
    if (bigFits) return big;
    return sgmmSharedBytes(cfg, t) <= maxShared ? t : { ...t, sgRows: 2 };
  }
  const small = cfg.M * cfg.N * cfg.K < SMALL_GEMM_MACS;
  if (caps.isCpu || (caps.isCpu === undefined && small)) {
    // bm = tm: every invocation of a workgroup shares A's 8 rows (uniform loads), 8 invocations
    // (one llvmpipe SIMD row) take 4 columns each.
    return { ...base, fmaLoads: "direct", bm: 8, tm: 8, bn: cfg.N <= 16 ? 16 : 32, bk: 4 };
  }
  const workgroups128 = Math.ceil(cfg.M / 128) * Math.ceil(cfg.N / 128);
  // 128×64 of 8×4 and 64×128 of 4×8, bk 16, measured best on the H100 (~26 TFLOP/s f32, docs/perf.md).
  if (workgroups128 >= 128) return { ...base, bm: 128, bn: 64, bk: 16, tm: 8, tn: 4 };
  return { ...base, bm: 64, bn: 64 };
}

/** The tile cfg runs with: cfg.tile's fields over the default for its shape (and caps), checked. */
export function resolveTile(cfg: GemmConfig, caps?: GemmTileCaps): GemmTile {
  const given = cfg.tile ?? {};
  const t: GemmTile = { ...chooseGemmTile(cfg, caps), ...given };
  if (given.sharedLayout && given.pad === undefined) t.pad = given.sharedLayout === "storage" ? 8 : 0;
  const need = (ok: boolean, what: string) => {
    if (!ok) throw new Error(`gemm '${cfg.name}': tile ${JSON.stringify(given)}: ${what}`);
  };
  const positive = [t.bm, t.bn, t.bk, t.tm, t.tn].every((x) => Number.isInteger(x) && x > 0);
  need(positive, "bm, bn, bk, tm, tn must be positive integers");
  need(t.bm % 4 === 0 && t.bn % 4 === 0 && t.bk % 4 === 0, "bm, bn, bk must be multiples of 4");
  if (cfg.path === "fma") {
    need(t.fmaLoads === "shared" || t.fmaLoads === "direct", `fmaLoads must be "shared" or "direct"`);
    need(t.bm % t.tm === 0 && t.bn % t.tn === 0, "bm must be a multiple of tm and bn of tn");
    need(t.tn % 4 === 0, "tn must be a multiple of 4");
    need(t.fmaLoads === "shared" || t.tm % 4 === 0, "the direct FMA variant needs tm a multiple of 4");
    need(fmaThreads(t) <= 1024, `(bm/tm)·(bn/tn) = ${fmaThreads(t)} invocations exceeds 1024`);
    need(t.sharedLayout === "k-major" && t.pad === 0 && t.stages === 1, "sharedLayout, pad and stages apply to the subgroup-matrix path (FMA stages rows of k)");
  } else {
    need(t.bk % t.mma.K === 0, "bk must be a multiple of mma.K");
    need(t.bm % (t.sgRows * t.mma.M) === 0 && t.bn % (t.sgCols * t.mma.N) === 0, "bm/bn must split into sgRows/sgCols × mma tiles");
    need((t.mma.M * t.mma.N) % 4 === 0, "mma.M·mma.N must be a multiple of 4");
    need(Number.isInteger(t.pad) && t.pad >= 0, "pad must be a non-negative integer");
    need(t.stages === 1 || t.stages === 2, "stages must be 1 or 2");
  }
  return t;
}

function validate(cfg: GemmConfig): void {
  const fail = (msg: string) => {
    throw new Error(`gemm '${cfg.name}': ${msg}`);
  };
  for (const d of [cfg.M, cfg.N, cfg.K]) if (!Number.isInteger(d) || d < 1) fail(`M, N, K must be positive integers`);
  const bf16Pair = cfg.a === "bf16" && cfg.b === "bf16";
  if (cfg.path === "subgroup-matrix" && !(isFp8(cfg.a) && isFp8(cfg.b)) && !(bf16Pair && cfg.preScale)) {
    // FP8 is exact in f16. bf16 is not (its exponent range is wider): it needs the power-of-two
    // pre-scale into f16's range (preScale); f32 operands take the FMA path.
    fail(`the subgroup-matrix path takes FP8 operands, or bf16 ones with preScale (got ${cfg.a}×${cfg.b}); use path "fma"`);
  }
  if (cfg.preScale && !(bf16Pair && cfg.path === "subgroup-matrix")) fail(`preScale applies to bf16×bf16 on the subgroup-matrix path (got ${cfg.a}×${cfg.b} on ${cfg.path})`);
  // Packed outputs are written as whole u32 words by one thread, so a word must not straddle rows.
  if (isFp8(cfg.out) && cfg.N % 4 !== 0) fail(`FP8 output needs N % 4 == 0 (N = ${cfg.N})`);
  if (cfg.out === "bf16" && cfg.N % 2 !== 0) fail(`bf16 output needs an even N (N = ${cfg.N})`);
  if (cfg.accumulate && isFp8(cfg.out)) fail("accumulate needs an f32 or bf16 output");
}

/**
 * Generates the GEMM kernel for `cfg`: WGSL, bindings in @binding order, and the dispatch size. An
 * undefined cfg.tile (or field of it) takes chooseGemmTile's default for the shape and `caps`.
 */
export function generateGemm(cfg: GemmConfig, caps?: GemmTileCaps): GemmKernel {
  validate(cfg);
  const t = resolveTile(cfg, caps);
  const ops = operands(cfg, t);
  const layout = `${cfg.transA ? "T" : "N"}${cfg.transB ? "T" : "N"}`;
  const b = new WgslBuilder(cfg.name, cfg.origin ?? `gemm ${layout} ${cfg.M}x${cfg.N}x${cfg.K} ${cfg.a}x${cfg.b}->${cfg.out} (${cfg.path})`);
  const prec: Prec = cfg.path === "fma" ? "f32" : "f16";
  if (prec === "f16") b.enable("f16");
  declareBindings(b, cfg);
  if (cfg.preScale) b.helper("pre_exp", preExpHelper());
  for (const op of ops) b.helper(`load_${op.name}`, loaderHelper(b, op, prec, cfg.preScale));
  b.helper("epilogue", epilogueHelper(b, cfg));
  if (isFp8(cfg.out)) b.workgroupArray("wg_amax", "atomic<u32>", 1);
  const workgroups: [number, number, number] = [Math.ceil(cfg.N / t.bn), Math.ceil(cfg.M / t.bm), 1];
  const kernel = (wgsl: string): GemmKernel => ({ wgsl, bindings: [...b.bindings], workgroups, entryPoint: "main", gemm: cfg });

  if (cfg.path === "fma") {
    const body = t.fmaLoads === "direct" ? fmaDirectBody(cfg, t, ops) : fmaSharedBody(b, cfg, t, ops);
    return kernel(b.build([fmaThreads(t)], body));
  }
  b.enable("subgroups").enable("chromium_experimental_subgroup_matrix");
  b.helper("gemm_sgmm", sgmmHelper(b, cfg, t, ops));
  return kernel(b.build([sgmmThreads(t)], [...preScaleStart(cfg), "gemm_sgmm(lidx, sgid, wid);"], ["@builtin(subgroup_id) sgid: u32"]));
}
