// Shared by the kernel tests: run one generated kernel on the test device with named buffers,
// a seeded random source (tests are reproducible), FP8 quantisation through the TS codec (the
// oracle side of every FP8 test), and a closeness check that reports the worst element.
import { expect } from "vitest";
import type { KernelSource } from "../../compiler/kernels/reduce.js";
import { createComputePipeline, readBuffer, runKernel, uploadBuffer, type Gpu } from "../../runtime/device.js";
import { FP8_FORMATS, decodeOne, encodeOne, packFP8, type Fp8Format } from "../../runtime/fp8.js";

/** Inputs by binding name (typed arrays), or a byte count for a zero-filled output buffer. */
export type KernelData = Record<string, ArrayBufferView | number>;

/** Runs `k` once; returns every read_write binding's contents by name. */
export async function run(gpu: Gpu, k: KernelSource, data: KernelData): Promise<Record<string, ArrayBuffer>> {
  const buffers = k.bindings.map((b) => {
    const d = data[b.name];
    if (d === undefined) throw new Error(`${k.wgsl.split("\n")[0]}: no data for binding '${b.name}'`);
    return uploadBuffer(gpu, typeof d === "number" ? new Uint8Array(d) : d, b.name);
  });
  try {
    const pipeline = await createComputePipeline(gpu, k.wgsl, k.entryPoint, k.wgsl.split("\n")[0].slice(10));
    await runKernel(gpu, pipeline, buffers, k.workgroups);
    const out: Record<string, ArrayBuffer> = {};
    for (const [i, b] of k.bindings.entries()) if (b.access === "read_write") out[b.name] = await readBuffer(gpu, buffers[i], buffers[i].size);
    return out;
  } finally {
    for (const buf of buffers) buf.destroy();
  }
}

export const f32 = (b: ArrayBuffer): Float32Array => new Float32Array(b);

/** mulberry32: a seeded uniform source in [lo, hi). */
export function rng(seed: number): (n: number, lo?: number, hi?: number) => Float32Array {
  let s = seed >>> 0;
  const next = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return (n, lo = -1, hi = 1) => Float32Array.from({ length: n }, () => lo + (hi - lo) * next());
}

/** fq(x) = decode(encode(x·s))/s: what a kernel's encode → decode round trip computes. */
export function fakeQuant(format: Fp8Format, s: number): (x: number) => number {
  const spec = FP8_FORMATS[format];
  return (x) => decodeOne(encodeOne(x * s, spec, true), spec) / s;
}

/** x quantised with scale s: packed words for the GPU and the exact dequantised values for the oracle. */
export function quantize(x: Float32Array, format: Fp8Format, s: number): { words: Uint32Array; deq: Float64Array; codes: Uint8Array } {
  const spec = FP8_FORMATS[format];
  const codes = Uint8Array.from(x, (v) => encodeOne(v * s, spec, true));
  return { words: packFP8(codes), deq: Float64Array.from(codes, (c) => decodeOne(c, spec) / s), codes };
}

/**
 * Asserts |actual − expected| ≤ rtol·(|expected| + max|expected|) element-wise: relative to the
 * element, with a floor relative to the tensor's scale (cancellation in a sum makes small elements
 * carry the absolute error of the large ones). `outliers` lets up to `count` elements exceed it by
 * at most `rtol` of their own (for one FP8 rounding that legitimately went the other way).
 * Reports the worst element on failure.
 */
export function expectClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  rtol: number,
  what = "",
  outliers?: { count: number; rtol: number },
): void {
  expect(actual.length, `${what}: length`).toBeGreaterThanOrEqual(expected.length);
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]));
  const ratio = (i: number, tol: number): number => Math.abs(actual[i] - expected[i]) / (tol * (Math.abs(expected[i]) + scale) || Number.MIN_VALUE);
  const bad: number[] = [];
  for (let i = 0; i < expected.length; i++) if (!(ratio(i, rtol) <= 1)) bad.push(i);
  const allowed = new Set(outliers ? bad.filter((i) => ratio(i, outliers.rtol) <= 1).slice(0, outliers.count) : []);
  const failing = bad.filter((i) => !allowed.has(i));
  const w = failing.reduce((a, i) => (a < 0 || !(ratio(i, rtol) <= ratio(a, rtol)) ? i : a), -1);
  const msg = w < 0 ? "" : `${what}: ${failing.length} elements off; worst ${w}: got ${actual[w]}, want ${expected[w]} (${ratio(w, rtol).toFixed(2)}× tolerance ${rtol})`;
  expect(failing.length, msg).toBe(0);
}

/** Codes must equal the TS encoding of the oracle unless the oracle is within 1e-5 of a rounding midpoint. */
export function expectCodes(got: ArrayLike<number>, want: ArrayLike<number>, encode: (x: number) => number): void {
  let checked = 0;
  for (let i = 0; i < want.length; i++) {
    const lo = encode(want[i] * (1 - 1e-5));
    if (lo !== encode(want[i] * (1 + 1e-5))) continue;
    expect(got[i], `element ${i} (oracle ${want[i]})`).toBe(lo);
    checked++;
  }
  expect(checked).toBeGreaterThan(want.length * 0.9);
}
