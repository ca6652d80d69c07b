// The kernels only the GPU runtime needs, generated like compiler/kernels/*: FP8 fake quantisation
// through a scale slot (delayed, current, blockwise), bf16 rounding, the per-step scale update, and
// AdamW. Each mirrors runtime/scale-state.ts / runtime/optimizer.ts formula for formula.
import { FLAT_WG, type KernelSource, atomicMaxOf, finish, fp8Codec, grid } from "../compiler/kernels/reduce.js";
import { wgslBf16Encode } from "../compiler/kernels/fp8.js";
import type { Fp8Format } from "../compiler/ir.js";
import { WgslBuilder, fmtF32 } from "../compiler/wgsl.js";
import { FLT_MAX } from "./scale-state.js";

const WG = 256;

/** |x| as u32 bits: for x ≥ 0 the bit order is the value order, and NaN (any sign) sorts above inf. */
const ABS_BITS = (x: string): string => `(bitcast<u32>(${x}) & 0x7fffffffu)`;

/**
 * `scale_from_amax(bits, fmax, margin, pow2) -> vec2<f32>` (x = 1 when valid, y = the scale): the
 * WGSL twin of scaleFromAmax. Invalid (keep the old scale) when amax is 0, inf or NaN. pow2 takes
 * ⌊log2(fmax/amax)⌋ exactly from the exponents and significands (no rounded division), clamped to
 * [−149, 127] after the margin; otherwise fmax/amax·2^−margin, FLT_MAX when that overflows.
 */
function scaleHelpers(b: WgslBuilder): void {
  b.helper(
    "pow2_f32",
    [
      "fn pow2_f32(e: i32) -> f32 {",
      "  if (e >= -126) { return bitcast<f32>(u32(e + 127) << 23u); }",
      "  return bitcast<f32>(1u << u32(e + 149));",
      "}",
    ].join("\n"),
  );
  b.helper(
    "exp_sig",
    [
      "// Unbiased exponent and 23-bit significand of a positive finite f32 given by its bits (subnormals normalised).",
      "fn exp_sig(bits: u32) -> vec2<i32> {",
      "  let e = i32(bits >> 23u);",
      "  if (e > 0) { return vec2<i32>(e - 127, i32(bits & 0x7fffffu)); }",
      "  let lz = countLeadingZeros(bits);",
      "  return vec2<i32>(i32(31u - lz) - 149, i32((bits << (lz - 8u)) & 0x7fffffu));",
      "}",
    ].join("\n"),
  );
  b.helper(
    "scale_from_amax",
    [
      "fn scale_from_amax(abits: u32, fmax: f32, margin: i32, pow2: bool) -> vec2<f32> {",
      "  if (abits == 0u || abits >= 0x7f800000u) { return vec2<f32>(0.0, 0.0); }",
      "  if (pow2) {",
      "    let a = exp_sig(abits);",
      "    let m = exp_sig(bitcast<u32>(fmax));",
      "    let e = m.x - a.x - select(0, 1, m.y < a.y) - margin;",
      "    return vec2<f32>(1.0, pow2_f32(clamp(e, -149, 127)));",
      "  }",
      "  let s = (fmax / bitcast<f32>(abits)) * pow2_f32(-margin);",
      `  return vec2<f32>(1.0, select(s, ${fmtF32(FLT_MAX)}, (bitcast<u32>(s) & 0x7f800000u) == 0x7f800000u));`,
      "}",
    ].join("\n"),
  );
}

/** Lines writing slot `slot`'s scale `s` and 1/s into their binding-aligned words of `aligned`. */
function alignedWrites(slot: string, s: string, stride: number): string[] {
  return [`let s_new = ${s};`, `aligned[(2u * ${slot}) * ${stride}u] = s_new;`, `aligned[(2u * ${slot} + 1u) * ${stride}u] = 1.0 / s_new;`];
}

/**
 * Each slot's scale s and 1/s copied to word (2·slot)·stride and (2·slot + 1)·stride of `aligned`
 * (stride = minStorageBufferOffsetAlignment / 4), so that a kernel can bind one slot's value as a
 * one-word view at index 0: a packed FP8 cast reads s there, a GEMM reads its operands' 1/s
 * (scaleA/scaleB), and one compiled pipeline serves every slot. Bindings: scales, aligned.
 */
export function alignedScales(cfg: { name: string; slots: number; stride: number }): KernelSource {
  const b = new WgslBuilder(cfg.name, `aligned scales of ${cfg.slots} slots`);
  b.bind("scales", "f32");
  b.bind("aligned", "f32", "read_write");
  const body = [`let i = ${FLAT_WG} * 64u + lidx;`, `if (i >= ${cfg.slots}u) { return; }`, ...alignedWrites("i", "scales[i]", cfg.stride)];
  return finish(b, 64, body, grid(Math.ceil(cfg.slots / 64)));
}

/** Words per entry of the `slot_info` table recordAmaxes reads: slot, ring offset, amax index. */
export const AMAX_RECORD_WORDS = 3;

/**
 * Moves the per-step amaxes that fused FP8 casts captured (atomicMax into the step's scratch) into
 * their slots' current history entries: entry i of `slot_info` is [slot, ring offset, amax index].
 * Bindings: slot_info, amax, heads, hist.
 */
export function recordAmaxes(cfg: { name: string; count: number }): KernelSource {
  const b = new WgslBuilder(cfg.name, `record ${cfg.count} amaxes`);
  b.bind("slot_info", "u32");
  b.bind("amax", "u32");
  b.bind("heads", "u32");
  b.bind("hist", "u32", "read_write");
  const W = AMAX_RECORD_WORDS;
  const body = [
    `let i = ${FLAT_WG} * 64u + lidx;`,
    `if (i >= ${cfg.count}u) { return; }`,
    `let slot = slot_info[i * ${W}u]; let h = slot_info[i * ${W}u + 1u] + heads[slot];`,
    `hist[h] = max(hist[h], amax[slot_info[i * ${W}u + 2u]]);`,
  ];
  return finish(b, 64, body, grid(Math.ceil(cfg.count / 64)));
}

/** Where a slot's amax ring lives: `hist[offset .. offset + length)`, the current entry at `heads[slot]`. */
export interface SlotRing {
  slot: number;
  offset: number;
  length: number;
}

/**
 * The per-use words the slot kernels read from their `slot_info` binding, so that one compiled
 * pipeline serves every slot: [slot id, ring offset, index into the per-step amax scratch].
 */
export function slotInfo(ring: SlotRing, atomicIndex = 0): Uint32Array {
  return Uint32Array.of(ring.slot, ring.offset, atomicIndex);
}

const SLOT = "slot_info[0]";
const RING = "slot_info[1]";
const ATOMIC = "slot_info[2]";

export interface FakeQuantConfig {
  name: string;
  n: number;
  format: Fp8Format;
  saturate: boolean;
  /** Record amax(x) into the slot's current history entry (false when another kernel does). */
  record: boolean;
  /** The adapter has subgroups: the amax by subgroupMax, no barrier (reduce.ts atomicMaxOf). */
  subgroups?: boolean;
}

/**
 * y = decode(encode(x·s)) / s with s = scales[slot] (the reference's quantize: a division, not a
 * multiply by 1/s, so the result is bit-exact wherever f32 division is correctly rounded), and
 * amax(x) atomicMax'ed into hist[ring + heads[slot]]. Bindings: x, y, slot_info, scales, [heads, hist].
 */
export function fakeQuant(cfg: FakeQuantConfig): KernelSource {
  const b = new WgslBuilder(cfg.name, `fake quantise to ${cfg.format}`);
  b.bind("x", "f32");
  b.bind("y", "f32", "read_write");
  b.bind("slot_info", "u32");
  b.bind("scales", "f32");
  if (cfg.record) {
    b.bind("heads", "u32");
    b.bind("hist", "atomic<u32>", "read_write");
  }
  const c = fp8Codec(b, cfg.format, cfg.saturate);
  const body = [
    `let i = ${FLAT_WG} * ${WG}u + lidx;`,
    `let s = scales[${SLOT}];`,
    `var bits = 0u;`,
    `if (i < arrayLength(&x)) {`,
    `  let v = x[i];`,
    `  y[i] = ${c.dec(c.enc("v * s"))} / s;`,
    `  bits = ${ABS_BITS("v")};`,
    `}`,
  ];
  if (cfg.record) body.push(...atomicMaxOf(b, "bits", `hist[${RING} + heads[${SLOT}]]`, cfg.subgroups ?? false));
  return finish(b, WG, body, grid(Math.ceil(cfg.n / WG)));
}

// Kernels below read their length from arrayLength (bindings are sized exactly), so one pipeline
// serves every tensor size; `n` only sizes the dispatch.

/**
 * amax[index] = max(amax[index], max |x|) on the f32 bits (the buffer is cleared each step), x f32
 * or packed bf16 (two a word: the top halves of f32s, so the same bit order). Bindings: x, slot_info, amax.
 */
export function absmaxBits(cfg: { name: string; n: number; subgroups?: boolean; bf16?: boolean }): KernelSource {
  const b = new WgslBuilder(cfg.name, cfg.bf16 ? "absmax bf16" : "absmax");
  b.bind("x", cfg.bf16 ? "u32" : "f32");
  b.bind("slot_info", "u32");
  b.bind("amax", "atomic<u32>", "read_write");
  const abs = cfg.bf16 ? "max((x[e] << 16u) & 0x7fffffffu, x[e] & 0x7fff0000u)" : ABS_BITS("x[e]");
  const body = [
    `let i = ${FLAT_WG} * ${WG}u + lidx;`,
    `var bits = 0u;`,
    `for (var e = i; e < arrayLength(&x); e = e + ${WG}u * nwg.x * nwg.y) { bits = max(bits, ${abs}); }`,
    ...atomicMaxOf(b, "bits", `amax[${ATOMIC}]`, cfg.subgroups ?? false),
  ];
  return finish(b, WG, body, grid(Math.min(1024, Math.ceil(cfg.n / (cfg.bf16 ? 2 * WG : WG)))));
}

export interface ScaleRecipe {
  fmax: number;
  margin: number;
  pow2: boolean;
}

/**
 * One invocation: records amax[index] (from the per-step scratch) into the slot's current history
 * entry and, with a recipe (current scaling), sets scales[slot] = scale_from_amax(amax), kept when
 * invalid. Bindings: slot_info, amax, [scales], heads, hist.
 */
export function recordAmax(cfg: { name: string; recipe?: ScaleRecipe; alignedStride?: number }): KernelSource {
  const { recipe, alignedStride } = cfg;
  const b = new WgslBuilder(cfg.name, recipe ? "current scale" : "record amax");
  b.bind("slot_info", "u32");
  b.bind("amax", "u32");
  if (recipe) b.bind("scales", "f32", "read_write");
  b.bind("heads", "u32");
  b.bind("hist", "u32", "read_write");
  if (recipe && alignedStride) b.bind("aligned", "f32", "read_write");
  const body = [`let a = amax[${ATOMIC}];`];
  if (recipe) {
    scaleHelpers(b);
    body.push(
      `let r = scale_from_amax(a, ${fmtF32(recipe.fmax)}, ${recipe.margin}, ${recipe.pow2});`,
      `if (r.x != 0.0) { scales[${SLOT}] = r.y; }`,
    );
    // The new scale's aligned copies (see alignedScales), for the packed cast and the GEMMs after it.
    if (alignedStride) body.push(...alignedWrites(SLOT, `scales[${SLOT}]`, alignedStride));
  }
  body.push(`let h = ${RING} + heads[${SLOT}];`, `hist[h] = max(hist[h], a);`);
  return finish(b, 1, body, [1, 1, 1]);
}

export interface BlockQuantConfig {
  name: string;
  rows: number;
  cols: number;
  /** Block shape, already clipped to the tensor (min(block, rows|cols)). */
  blockRows: number;
  blockCols: number;
  format: Fp8Format;
  saturate: boolean;
  pow2: boolean;
  fmax: number;
}

/**
 * Blockwise scaling: one workgroup per block computes the block's amax, s = scale_from_amax(amax,
 * margin 0) or 1 when invalid, fake-quantises the block, and records the block amax into the
 * slot's history (their max is the tensor's amax). Bindings: x, y, slot_info, heads, hist.
 */
export function blockQuant(cfg: BlockQuantConfig): KernelSource {
  const { rows, cols, blockRows: BR, blockCols: BC } = cfg;
  const gridCols = Math.ceil(cols / BC);
  const blocks = Math.ceil(rows / BR) * gridCols;
  const b = new WgslBuilder(cfg.name, `blockwise ${BR}×${BC} fake quantise [${rows}, ${cols}] to ${cfg.format}`);
  b.bind("x", "f32");
  b.bind("y", "f32", "read_write");
  b.bind("slot_info", "u32");
  b.bind("heads", "u32");
  b.bind("hist", "atomic<u32>", "read_write");
  b.workgroupArray("wg_amax", "atomic<u32>", 1);
  scaleHelpers(b);
  const c = fp8Codec(b, cfg.format, cfg.saturate);
  const loop = (inner: string): string[] => [
    `for (var e = lidx; e < cnt; e = e + ${WG}u) {`,
    `  let idx = (r0 + e / nc) * ${cols}u + c0 + e % nc;`,
    `  ${inner}`,
    `}`,
  ];
  const body = [
    `let blk = ${FLAT_WG};`,
    `if (blk >= ${blocks}u) { return; }`,
    `let r0 = (blk / ${gridCols}u) * ${BR}u; let c0 = (blk % ${gridCols}u) * ${BC}u;`,
    `let nc = min(${BC}u, ${cols}u - c0); let cnt = min(${BR}u, ${rows}u - r0) * nc;`,
    `var m = 0u;`,
    ...loop(`m = max(m, ${ABS_BITS("x[idx]")});`),
    `atomicMax(&wg_amax[0], m);`,
    `workgroupBarrier();`,
    `let a = atomicLoad(&wg_amax[0]);`,
    `let r = scale_from_amax(a, ${fmtF32(cfg.fmax)}, 0, ${cfg.pow2});`,
    `let s = select(1.0, r.y, r.x != 0.0);`,
    ...loop(`y[idx] = ${c.dec(c.enc("x[idx] * s"))} / s;`),
    `if (lidx == 0u) { atomicMax(&hist[${RING} + heads[${SLOT}]], a); }`,
  ];
  return finish(b, WG, body, grid(blocks));
}

/**
 * y[r, offset + c] = x[r, c] for x [rows, width] into y [rows, total]: the parts of a multi-input
 * kurtosis probe side by side (one token's vector is the concatenation of its rows). Bindings: x, y.
 */
export function placeColumns(cfg: { name: string; rows: number; width: number; total: number; offset: number }): KernelSource {
  const n = cfg.rows * cfg.width;
  const b = new WgslBuilder(cfg.name, `place [${cfg.rows}, ${cfg.width}] at column ${cfg.offset} of ${cfg.total}`);
  b.bind("x", "f32");
  b.bind("y", "f32", "read_write");
  const body = [
    `let i = ${FLAT_WG} * ${WG}u + lidx;`,
    `if (i < ${n}u) { y[(i / ${cfg.width}u) * ${cfg.total}u + ${cfg.offset}u + i % ${cfg.width}u] = x[i]; }`,
  ];
  return finish(b, WG, body, grid(Math.ceil(n / WG)));
}

/** y = bf16(x) as f32: round to nearest even on the 16 dropped bits (the reference's roundToBF16). Bindings: x, y. */
export function bf16Round(cfg: { name: string; n: number }): KernelSource {
  const b = new WgslBuilder(cfg.name, "round to bf16");
  b.bind("x", "f32");
  b.bind("y", "f32", "read_write");
  b.helper("bf16_encode", wgslBf16Encode());
  const body = [`let i = ${FLAT_WG} * ${WG}u + lidx;`, `if (i < arrayLength(&x)) { y[i] = bitcast<f32>(bf16_encode(x[i]) << 16u); }`];
  return finish(b, WG, body, grid(Math.ceil(cfg.n / WG)));
}

/** Per-slot words of the `meta` buffer the scale update reads. */
export const SLOT_META_WORDS = 5;
export const SLOT_DELAYED = 1;
export const SLOT_MOST_RECENT = 2;
export const SLOT_POW2 = 4;

/**
 * End of a step for every slot (ScaleState.update): delayed slots take amax* = max of the ring (or
 * its current entry) and s = scale_from_amax(amax*), kept when invalid; then every ring rolls and
 * its new entry is zeroed. slot_meta per slot: offset, length, flags, margin (i32 bits), fmax (f32 bits).
 * Bindings: slot_meta, scales, heads, hist.
 */
export function scaleUpdate(cfg: { name: string; slots: number }): KernelSource {
  const b = new WgslBuilder(cfg.name, `scale update of ${cfg.slots} slots`);
  b.bind("slot_meta", "u32");
  b.bind("scales", "f32", "read_write");
  b.bind("heads", "u32", "read_write");
  b.bind("hist", "u32", "read_write");
  scaleHelpers(b);
  const W = SLOT_META_WORDS;
  const body = [
    `let i = ${FLAT_WG} * 64u + lidx;`,
    `if (i >= ${cfg.slots}u) { return; }`,
    `let off = slot_meta[i * ${W}u]; let len = slot_meta[i * ${W}u + 1u]; let flags = slot_meta[i * ${W}u + 2u];`,
    `let head = heads[i];`,
    `if ((flags & ${SLOT_DELAYED}u) != 0u) {`,
    `  var a = hist[off + head];`,
    `  if ((flags & ${SLOT_MOST_RECENT}u) == 0u) { for (var j = 0u; j < len; j = j + 1u) { a = max(a, hist[off + j]); } }`,
    `  let r = scale_from_amax(a, bitcast<f32>(slot_meta[i * ${W}u + 4u]), bitcast<i32>(slot_meta[i * ${W}u + 3u]), (flags & ${SLOT_POW2}u) != 0u);`,
    `  if (r.x != 0.0) { scales[i] = r.y; }`,
    `}`,
    `let nh = (head + 1u) % len;`,
    `heads[i] = nh;`,
    `hist[off + nh] = 0u;`,
  ];
  return finish(b, 64, body, grid(Math.ceil(cfg.slots / 64)));
}

/** Words of the per-step hyperparameter buffer the AdamW kernels read. */
export const HYPER_WORDS = 10;

/** The hyperparameter buffer of one update: f32 [lr, β₁, 1−β₁, β₂, 1−β₂, eps, wd, clip, 1−β₁ᵗ, 1−β₂ᵗ] (host f64, rounded once). */
export function hyperValues(h: { step: number; lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; clip: number }): Float32Array {
  return Float32Array.of(h.lr, h.beta1, 1 - h.beta1, h.beta2, 1 - h.beta2, h.eps, h.weightDecay, h.clip, 1 - h.beta1 ** h.step, 1 - h.beta2 ** h.step);
}

/**
 * One AdamW update of a parameter in place (runtime/optimizer.ts adamwUpdate) with the global-norm
 * clip factor (clipFactor) computed from sumsq[0] = Σ g² of every gradient. Bindings: p, g, m, v, hyper, sumsq.
 */
export function adamw(cfg: { name: string; n: number; lrScale: number; decay: boolean }): KernelSource {
  const b = new WgslBuilder(cfg.name, "adamw");
  b.bind("p", "f32", "read_write");
  b.bind("g", "f32");
  b.bind("m", "f32", "read_write");
  b.bind("v", "f32", "read_write");
  b.bind("hyper", "f32");
  b.bind("sumsq", "f32");
  const body = [
    `let i = ${FLAT_WG} * ${WG}u + lidx;`,
    `if (i >= arrayLength(&p)) { return; }`,
    `let norm = sqrt(sumsq[0]); let clip = hyper[7];`,
    // clipFactor: 1 unless clip > 0 and the norm is finite and above it.
    `let clipped = clip > 0.0 && (bitcast<u32>(norm) & 0x7f800000u) != 0x7f800000u && norm > clip;`,
    `let f = select(1.0, clip / (norm + ${fmtF32(1e-6)}), clipped);`,
    `let lr = hyper[0] * ${fmtF32(cfg.lrScale)};`,
    `let decay = ${cfg.decay ? "1.0 - lr * hyper[6]" : "1.0"};`,
    `let gi = g[i] * f;`,
    `let mi = hyper[1] * m[i] + hyper[2] * gi;`,
    `let vi = hyper[3] * v[i] + hyper[4] * gi * gi;`,
    `m[i] = mi;`,
    `v[i] = vi;`,
    `p[i] = p[i] * decay - (lr * (mi / hyper[8])) / (sqrt(vi / hyper[9]) + hyper[5]);`,
  ];
  return finish(b, WG, body, grid(Math.ceil(cfg.n / WG)));
}

/** y[i] = scales[slot_info[i]] for i < 2: the FP8DPA attention's P and dS scales side by side. Bindings: slot_info, scales, y. */
export function gatherScales(cfg: { name: string }): KernelSource {
  const b = new WgslBuilder(cfg.name, "gather P/dS scales");
  b.bind("slot_info", "u32");
  b.bind("scales", "f32");
  b.bind("y", "f32", "read_write");
  return finish(b, 2, ["y[lidx] = scales[slot_info[lidx]];"], [1, 1, 1]);
}
