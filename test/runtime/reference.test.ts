// The CPU reference interpreter (runtime/reference.ts) against small hand-computed examples, and
// ScaleState (runtime/scale-state.ts) delayed/current/blockwise behaviour, with quantize checked
// against the TS FP8 codec.
import { describe, expect, it } from "vitest";
import { GraphBuilder } from "../../compiler/graph-builder.js";
import type { OpAttrs, OpKind, ScaleSlot, Scaling } from "../../compiler/ir.js";
import { decodeOne, encodeOne, FP8_FORMATS } from "../../runtime/fp8.js";
import { outputValue, runReference, type ReferenceOptions } from "../../runtime/reference.js";
import { erf, ropeFrequencies } from "../../runtime/reference-ops.js";
import { FLT_MAX, ScaleState } from "../../runtime/scale-state.js";

type Value = { shape: number[]; data: number[] };

/** Runs one op on parameter inputs and returns its value. */
function run<K extends OpKind>(
  op: K,
  inputs: Value[],
  attrs: OpAttrs[K],
  opts: ReferenceOptions & { batch?: number; seqLen?: number; slots?: ScaleSlot[]; ids?: number[] } = {},
): number[] {
  const b = new GraphBuilder(opts.batch ?? 1, opts.seqLen ?? 1);
  b.scaleSlots.push(...(opts.slots ?? []));
  const params = new Map<number, Float64Array>();
  const ids = inputs.map((v, i) => {
    const id = b.add("param", [], { init: { kind: "const", value: 0 }, decay: false, lrScale: 1 }, `in${i}`, v.shape);
    params.set(id, Float64Array.from(v.data));
    return id;
  });
  if (opts.ids) ids.push(b.add("input", [], { input: "tokens" }, "ids", [opts.ids.length]));
  b.outputs.y = b.add(op, ids, attrs, "y");
  const g = b.build();
  return Array.from(outputValue(g, runReference(g, { params, tokens: opts.ids && Int32Array.from(opts.ids) }, opts), "y"));
}

const t = (shape: number[], data: number[]): Value => ({ shape, data });

function expectClose(actual: number[], expected: number[], digits = 12): void {
  expect(actual.length).toBe(expected.length);
  actual.forEach((a, i) => expect(a).toBeCloseTo(expected[i], digits));
}

describe("reference ops on hand-computed examples", () => {
  it("matmul with each transpose", () => {
    const a = t([2, 3], [1, 2, 3, 4, 5, 6]);
    const b = t([3, 2], [1, 0, 0, 1, 1, 1]);
    expect(run("matmul", [a, b], { transA: false, transB: false })).toEqual([4, 5, 10, 11]);
    expect(run("matmul", [a, a], { transA: false, transB: true })).toEqual([14, 32, 32, 77]);
    expect(run("matmul", [a, a], { transA: true, transB: false })).toEqual([17, 22, 27, 22, 29, 36, 27, 36, 45]);
    expect(run("matmul", [b, a], { transA: true, transB: true })).toEqual([4, 10, 5, 11]);
  });

  it("add/sub/mul/div broadcast the second operand numpy-style; sum_to undoes it", () => {
    const a = t([2, 3], [1, 2, 3, 4, 5, 6]);
    expect(run("add", [a, t([3], [10, 20, 30])], {})).toEqual([11, 22, 33, 14, 25, 36]);
    expect(run("sub", [a, t([2, 1], [1, 2])], {})).toEqual([0, 1, 2, 2, 3, 4]);
    expect(run("mul", [a, t([1], [2])], {})).toEqual([2, 4, 6, 8, 10, 12]);
    expect(run("div", [a, t([], [2])], {})).toEqual([0.5, 1, 1.5, 2, 2.5, 3]);
    expect(run("sum_to", [a], { shape: [3] })).toEqual([5, 7, 9]);
    expect(run("sum_to", [a], { shape: [2, 1] })).toEqual([6, 15]);
    expect(run("sum_to", [a], { shape: [] })).toEqual([21]);
  });

  it("rmsnorm of [3,4] by hand, with gain and with group 2", () => {
    const x = t([3, 4], [1, 1, 1, 1, 2, -2, 2, -2, 3, 4, 0, 0]);
    // mean squares 1, 4, 6.25 → divide by 1, 2, 2.5
    expectClose(run("rmsnorm", [x], { eps: 0, group: 4 }), [1, 1, 1, 1, 1, -1, 1, -1, 1.2, 1.6, 0, 0]);
    expectClose(run("rmsnorm", [x, t([4], [1, 2, 3, 4])], { eps: 0, group: 4 }), [1, 2, 3, 4, 1, -2, 3, -4, 1.2, 3.2, 0, 0]);
    expect(run("rmsnorm", [t([1, 4], [1, 1, 2, 2])], { eps: 0, group: 2 })).toEqual([1, 1, 1, 1]);
    // eps keeps an all-zero row finite
    expect(run("rmsnorm", [t([1, 2], [0, 0])], { eps: 1e-5, group: 2 })).toEqual([0, 0]);
  });

  it("layernorm subtracts the mean and adds the bias", () => {
    const s = 1 / Math.sqrt(1.25); // var of [1,2,3,4] is 1.25
    expectClose(run("layernorm", [t([1, 4], [1, 2, 3, 4])], { eps: 0, group: 4 }), [-1.5 * s, -0.5 * s, 0.5 * s, 1.5 * s]);
    expectClose(run("layernorm", [t([1, 4], [1, 2, 3, 4]), t([2], [2, 2]), t([2], [1, -1])], { eps: 0, group: 2 }), [-1, 1, -1, 1]);
  });

  it("activations: exact-erf GeLU, SiLU, tanh, xIELU", () => {
    expect(erf(0.5)).toBeCloseTo(0.5204998778130465, 15);
    expect(erf(2)).toBeCloseTo(0.9953222650189527, 15);
    expect(erf(-1)).toBeCloseTo(-0.8427007929497149, 15);
    expectClose(run("gelu", [t([3], [0, 1, -1])], {}), [0, 0.8413447460685429, -0.15865525393145707], 15);
    expectClose(run("silu", [t([2], [0, 1])], {}), [0, 1 / (1 + Math.exp(-1))], 15);
    expectClose(run("tanh", [t([1], [0.5])], {}), [Math.tanh(0.5)], 15);
    // ρ = softplus⁻¹: α_p = α_n = 0.8, β = 0.5 (papers.md §5.6)
    const rho = [t([1], [0.20338232081102478]), t([1], [-1.0502256128148464])];
    const y = run("xielu", [t([4], [1, 0, -1, 2]), ...rho], { beta: 0.5, eps: -1e-6 });
    // f(0) = α_n·(e^ε − 1) ≈ −8e-7, not exactly 0: ε = −1e-6 clips the exponent as in the xIELU kernel.
    expectClose(y, [0.8 + 0.5, 0.8 * Math.expm1(-1e-6), 0.8 * Math.exp(-1) - 0.5, 0.8 * 4 + 1]);
  });

  it("glu splits the last dimension into gate and up halves", () => {
    const y = run("glu", [t([2, 4], [0, 1, 5, 7, 1, -1, 2, 3])], { act: "gelu" });
    expectClose(y, [0, 0.8413447460685429 * 7, 0.8413447460685429 * 2, -0.15865525393145707 * 3], 14);
  });

  it("row_absmax over the first cols columns; scale; cast to bf16", () => {
    expect(run("row_absmax", [t([2, 4], [1, -3, 9, 9, -5, 2, 9, 9])], { cols: 2 })).toEqual([3, 5]);
    expect(run("scale", [t([2], [1, -2])], { factor: 0.5 })).toEqual([0.5, -1]);
    // bf16 keeps 8 significant bits: 1 + 2^-8 ties to even (1), 1 + 3·2^-8 rounds up to 1 + 2^-6.
    expect(run("cast", [t([3], [1 + 2 ** -8, 1 + 3 * 2 ** -8, 256.5])], { to: "bf16" })).toEqual([1, 1 + 2 ** -6, 256]);
  });

  it("embed gathers rows; embed_grad scatter-adds repeated ids", () => {
    const table = t([3, 2], [0, 1, 10, 11, 20, 21]);
    expect(run("embed", [table], {}, { ids: [2, 0, 2] })).toEqual([20, 21, 0, 1, 20, 21]);
    const b = new GraphBuilder(1, 3);
    const ids = b.add("input", [], { input: "tokens" }, "ids", [3]);
    const dy = b.add("param", [], { init: { kind: "const", value: 0 }, decay: false, lrScale: 1 }, "dy", [3, 2]);
    b.outputs.y = b.add("embed_grad", [ids, dy], { vocab: 3 }, "y");
    const g = b.build();
    const v = runReference(g, { params: new Map([[dy, Float64Array.of(1, 2, 3, 4, 5, 6)]]), tokens: Int32Array.of(2, 0, 2) });
    expect(Array.from(outputValue(g, v, "y"))).toEqual([3, 4, 0, 0, 6, 8]);
  });

  it("rope: identity at position 0, rotation by pos·f at position 1, inverse undoes it", () => {
    const x = t([2, 2], [1, 0, 1, 0]);
    const attrs = { headDim: 2, seqLen: 2, base: 10000, inverse: false };
    expectClose(run("rope", [x], attrs), [1, 0, Math.cos(1), Math.sin(1)], 15);
    const y = run("rope", [x], attrs);
    expectClose(run("rope", [t([2, 2], y)], { ...attrs, inverse: true }), [1, 0, 1, 0], 15);
  });

  it("Llama-3.1 RoPE frequencies: kept, smoothly blended, divided by the factor", () => {
    // base 100, head dim 8 → f = 1, 0.316, 0.1, 0.0316; wavelengths 6.3 < 32/4 | 19.9 in between | 62.8, 199 > 32
    const f = ropeFrequencies(8, 100, { factor: 8, lowFreq: 1, highFreq: 4, original: 32 });
    expectClose(Array.from(f), [1, 0.09583998588296266, 0.0125, 0.003952847075210474], 15);
    // the paper's setting leaves the highest frequency alone and divides the lowest by 8
    const llama = ropeFrequencies(128, 500000, { factor: 8, lowFreq: 1, highFreq: 4, original: 8192 });
    expect(llama[0]).toBe(1);
    expect(llama[63]).toBeCloseTo(500000 ** (-126 / 128) / 8, 20);
  });

  it("attention: seq 1 returns v (per GQA group); causal row 0 sees only key 0; a 2-key softmax by hand", () => {
    // seq 1, heads 2, kv 1, head dim 2: every head reads the one kv head
    const q = t([2, 4], [1, 2, 3, 4, 5, 6, 7, 8]);
    const kv = t([2, 2], [0.5, -1, 2, 3]);
    const a1 = { heads: 2, kvHeads: 1, headDim: 2, seqLen: 1, scale: 1, causal: true };
    expect(run("attention", [q, kv, t([2, 2], [9, 8, 7, 6])], a1, { batch: 2 })).toEqual([9, 8, 9, 8, 7, 6, 7, 6]);
    // head dim 1, seq 2: scores of row 1 are 0 and ln 3 → p = [1/4, 3/4]; v = [4, 8] → 7
    const a2 = { heads: 1, kvHeads: 1, headDim: 1, seqLen: 2, scale: 1, causal: true };
    const k = t([2, 1], [0, Math.log(3)]);
    const v = t([2, 1], [4, 8]);
    expectClose(run("attention", [t([2, 1], [1, 1]), k, v], a2, { seqLen: 2 }), [4, 7], 14);
    // without the mask row 0 also sees key 1
    expectClose(run("attention", [t([2, 1], [1, 1]), k, v], { ...a2, causal: false }, { seqLen: 2 }), [7, 7], 14);
  });

  it("cross_entropy: uniform logits give ln V; a two-class row by hand", () => {
    expectClose(run("cross_entropy", [t([3, 5], new Array<number>(15).fill(0.3))], {}, { ids: [0, 4, 2] }), [Math.log(5)], 14);
    expectClose(run("cross_entropy", [t([1, 2], [0, Math.log(3)])], {}, { ids: [1] }), [-Math.log(0.75)], 14);
  });

  it("kurtosis per token and per sequence", () => {
    const x = t([2, 4], [1, 1, 1, 1, 3, 0, 0, 0]);
    const attrs = { mode: "per_token" as const, seqLen: 2, probe: "p", layer: 0 };
    expect(run("kurtosis", [x], attrs)).toEqual([(1 + 4) / 2]); // 1 for constant magnitude, 4 = D for one channel
    // one sequence of 8: mean x⁴ = 85/8, mean x² = 13/8
    expectClose(run("kurtosis", [x], { ...attrs, mode: "per_sequence" }), [680 / 169], 14);
  });

  it("f32 precision rounds every result to f32", () => {
    const x = t([1, 3], [0.1, 0.2, 1 / 3]);
    const y64 = run("mul", [x, t([], [Math.PI])], {});
    const y32 = run("mul", [x, t([], [Math.PI])], {}, { precision: "f32" });
    y32.forEach((v, i) => {
      expect(Math.fround(v)).toBe(v);
      expect(v).toBeCloseTo(y64[i], 6);
    });
  });

  it("names a parameter that was not fed", () => {
    const b = new GraphBuilder(1, 1);
    b.add("param", [], { init: { kind: "const", value: 0 }, decay: false, lrScale: 1 }, "w", [2]);
    expect(() => runReference(b.build(), { params: new Map() })).toThrow(/param %0 "w"/);
  });
});

const delayed = (history: number, extra: Partial<Extract<Scaling, { kind: "delayed" }>> = {}): Scaling => ({
  kind: "delayed",
  history,
  margin: 0,
  amax: "max",
  pow2: false,
  ...extra,
});

function slot(scaling: Scaling, extra: Partial<ScaleSlot> = {}): ScaleSlot {
  return { id: 0, name: "x", format: "e4m3", scaling, saturate: true, role: "activation", ...extra };
}

/** One delayed step: cast a tensor of the given amax, then update. Returns the scale that was used. */
function step(s: ScaleState, amax: number): number {
  const used = s.cast(0, [amax, -amax / 2], [2]).scales[0];
  s.update();
  return used;
}

describe("ScaleState", () => {
  it("delayed: step 0 casts with s = 1, then s = 448 / max over a ring of H amaxes", () => {
    const s = new ScaleState([slot(delayed(3))]);
    expect(step(s, 2)).toBe(1);
    expect(s.scale(0)).toBe(224);
    expect(step(s, 4)).toBe(224);
    expect(s.scale(0)).toBe(112);
    expect(step(s, 1)).toBe(112);
    expect(step(s, 1)).toBe(112); // history [1, 1, 4]: the 4 is still in the window
    expect(s.history(0)).toEqual([0, 1, 1]); // rolled: this step's entry is fresh
    expect(step(s, 1)).toBe(112);
    expect(s.scale(0)).toBe(448); // the 4 has left the window
    expect(s.scaleInv(0)).toBe(Math.fround(1 / 448));
  });

  it("delayed: most_recent, margin, f32 rounding, and pow2 rounding", () => {
    const recent = new ScaleState([slot(delayed(4, { amax: "most_recent" }))]);
    step(recent, 4);
    step(recent, 1);
    expect(recent.scale(0)).toBe(448);
    const margin = new ScaleState([slot(delayed(4, { margin: 1 }))]);
    step(margin, 2);
    expect(margin.scale(0)).toBe(112);
    const plain = new ScaleState([slot(delayed(4))]);
    step(plain, 3);
    expect(plain.scale(0)).toBe(Math.fround(448 / 3));
    const pow2 = new ScaleState([slot(delayed(4, { pow2: true, margin: 1 }))]);
    step(pow2, 3); // 448/3 = 149.3 → 2^7, minus the margin → 2^6
    expect(pow2.scale(0)).toBe(64);
    const e5 = new ScaleState([slot(delayed(1), { format: "e5m2" })]);
    step(e5, 2);
    expect(e5.scale(0)).toBe(57344 / 2);
  });

  it("delayed: an all-zero or non-finite amax keeps the old scale; an overflowing scale clamps to FLT_MAX", () => {
    const s = new ScaleState([slot(delayed(1))]);
    step(s, 8);
    expect(s.scale(0)).toBe(56);
    step(s, 0);
    expect(s.scale(0)).toBe(56);
    s.cast(0, [NaN, 1], [2]);
    s.update();
    expect(s.scale(0)).toBe(56);
    step(s, 1e-45);
    expect(s.scale(0)).toBe(FLT_MAX);
  });

  it("update can be limited to some slots (forward slots after the forward pass)", () => {
    const s = new ScaleState([slot(delayed(2)), slot(delayed(2), { id: 1, role: "gradient", format: "e5m2" })]);
    s.cast(0, [4], [1]);
    s.cast(1, [4], [1]);
    s.update((x) => x.role !== "gradient");
    expect([s.scale(0), s.scale(1)]).toEqual([112, 1]);
    expect(s.history(1)[0]).toBe(4);
  });

  it("current: the scale comes from the tensor being cast; zero keeps the last one", () => {
    const s = new ScaleState([slot({ kind: "current", margin: 0, pow2: true })]);
    expect(s.cast(0, [3, -1], [2]).scales[0]).toBe(128);
    expect(s.cast(0, [0, 0], [2]).scales[0]).toBe(128);
    expect(s.cast(0, [0.5], [1]).scales[0]).toBe(512);
  });

  it("blockwise: one just-in-time scale per block; weights use the weight block", () => {
    const sc: Scaling = { kind: "blockwise", activationBlock: [1, 2], weightBlock: [2, 2], pow2: false };
    const act = new ScaleState([slot(sc)]).cast(0, [1, -2, 4, 0, 0, 0, 8, 7], [2, 4]);
    expect(Array.from(act.scales)).toEqual([224, 112, 1, 56]);
    const w = new ScaleState([slot({ ...sc, pow2: true }, { role: "weight" })]).cast(0, [1, -2, 4, 0, 0, 0, 8, 7], [2, 4]);
    expect(Array.from(w.scales)).toEqual([128, 32]);
  });
});

describe("quantize", () => {
  const x = t([2, 3], [1.0625, 500, -0.001, 3, -7.3, 0.25]);

  it("fake-quantises through the slot's format with s = 1 at step 0 (hand values, E4M3 saturating)", () => {
    const y = run("quantize", [x], { slot: 0 }, { slots: [slot(delayed(4))] });
    // 1.0625 ties between 1 and 1.125 → even (1); 500 saturates to 448; −0.001 rounds to −2^−9; −7.3 → −7.5 (step 0.5)
    expect(y).toEqual([1, 448, -(2 ** -9), 3, -7.5, 0.25]);
    const nosat = run("quantize", [x], { slot: 0 }, { slots: [slot(delayed(4), { saturate: false })] });
    expect(nosat[1]).toBeNaN();
  });

  it("matches the TS codec with the scale state's scale, and records the amax", () => {
    for (const format of ["e4m3", "e5m2"] as const) {
      const slots = [slot(delayed(4), { format })];
      const state = new ScaleState(slots);
      run("quantize", [x], { slot: 0 }, { slots, scaleState: state });
      expect(state.history(0)[0]).toBe(500);
      state.update();
      const s = state.scale(0);
      expect(s).toBe(Math.fround(FP8_FORMATS[format].maxFinite / 500));
      const y = run("quantize", [x], { slot: 0 }, { slots, scaleState: state });
      const spec = FP8_FORMATS[format];
      expect(y).toEqual(x.data.map((v) => decodeOne(encodeOne(v * s, spec, true), spec) / s));
    }
  });

  it("blockwise quantize uses each block's own scale", () => {
    const slots = [slot({ kind: "blockwise", activationBlock: [1, 3], weightBlock: [3, 3], pow2: true })];
    const y = run("quantize", [x], { slot: 0 }, { slots });
    const spec = FP8_FORMATS.e4m3;
    const q = (v: number, s: number): number => decodeOne(encodeOne(v * s, spec, true), spec) / s;
    // row 0 amax 500 → s = 2^⌊log2(448/500)⌋ = 1/2; row 1 amax 7.3 → 2^5
    expect(y).toEqual([...x.data.slice(0, 3).map((v) => q(v, 0.5)), ...x.data.slice(3).map((v) => q(v, 32))]);
  });
});
