// The WGSL FP8/bf16 codecs (compiler/kernels/fp8.ts) on the device (lavapipe in CI) against the
// TypeScript codecs, bit for bit: decode of all 256 codes (f32 and f16 variants), encode of every
// binary16, the bf16 rounding neighbourhoods and 1M seeded f32, in both saturation modes.
import { describe, expect, it } from "vitest";
import { WgslBuilder } from "../../compiler/wgsl.js";
import {
  fp8DecodeName,
  fp8EncodeName,
  wgslBf16Decode,
  wgslBf16Encode,
  wgslFp8Decode,
  wgslFp8Encode,
  wgslFp8Pack,
} from "../../compiler/kernels/fp8.js";
import { createComputePipeline, readBuffer, runKernel, uploadBuffer, createBuffer } from "../../runtime/device.js";
import { decodeFP8, encodeBF16, encodeFP8, packFP8, type Fp8Format } from "../../runtime/fp8.js";
import { f16InputBits, fp8RandomInputBits } from "../helpers/fp8-inputs.js";
import { withGpu } from "../helpers/gpu.js";

const FORMATS: Fp8Format[] = ["e4m3", "e5m2"];
const ALL_CODES = Uint8Array.from({ length: 256 }, (_, i) => i);
const WG = 256;

/** Same value, NaN matching any NaN, −0 distinct from +0 (compared on f32 bits). */
function sameF32(gotBits: number, want: number): boolean {
  const f = new Float32Array(new Uint32Array([gotBits]).buffer)[0];
  return Number.isNaN(want) ? Number.isNaN(f) : Object.is(f, want);
}

function firstWordMismatches(got: Uint32Array, want: Uint32Array, inputs: Uint32Array, what: string, limit = 5): string[] {
  const out: string[] = [];
  for (let w = 0; w < want.length && out.length < limit; w++) {
    if (got[w] === want[w]) continue;
    for (let k = 0; k < 4; k++) {
      const g = (got[w] >>> (8 * k)) & 0xff;
      const e = (want[w] >>> (8 * k)) & 0xff;
      if (g !== e) out.push(`${what} input #${4 * w + k} bits 0x${inputs[4 * w + k].toString(16)}: got 0x${g.toString(16)}, want 0x${e.toString(16)}`);
    }
  }
  return out;
}

describe("WGSL FP8 codecs vs TypeScript", () => {
  it("decode all 256 codes (f32) through fp8_unpack/fp8_unpack4, and bf16_decode of all 65,536 codes", () =>
    withGpu(async (gpu) => {
      const b = new WgslBuilder("fp8_decode_test");
      b.bind("words", "u32", "read");
      b.bind("out", "u32", "read_write");
      for (const f of FORMATS) b.helper(fp8DecodeName(f), wgslFp8Decode(f));
      b.helper("fp8_pack", wgslFp8Pack()).helper("bf16_decode", wgslBf16Decode());
      const wgsl = b.build(
        [WG],
        [
          "let i = gid.x;",
          "if (i < 256u) {",
          "  out[i] = bitcast<u32>(fp8_decode_e4m3(fp8_unpack(words[i / 4u], i % 4u)));",
          "  out[256u + i] = bitcast<u32>(fp8_decode_e5m2(fp8_unpack4(words[i / 4u])[i % 4u]));",
          "}",
          "out[512u + i] = bitcast<u32>(bf16_decode(i));",
        ],
      );
      const pipeline = await createComputePipeline(gpu, wgsl, "main", "fp8_decode_test");
      const words = uploadBuffer(gpu, packFP8(ALL_CODES), "codes");
      const outBytes = (512 + 65536) * 4;
      const out = createBuffer(gpu, outBytes, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC, "decoded");
      await runKernel(gpu, pipeline, [words, out], [65536 / WG, 1, 1]);
      const got = new Uint32Array(await readBuffer(gpu, out, outBytes));
      FORMATS.forEach((f, k) => {
        const want = decodeFP8(ALL_CODES, f);
        const bad = [...ALL_CODES].filter((c) => !sameF32(got[256 * k + c], want[c]));
        expect(bad.map((c) => `${f} 0x${c.toString(16)}: bits 0x${got[256 * k + c].toString(16)}, want ${want[c]}`)).toEqual([]);
      });
      for (let c = 0; c < 65536; c++) if (got[512 + c] !== (c << 16) >>> 0) expect.fail(`bf16_decode(0x${c.toString(16)}) = 0x${got[512 + c].toString(16)}`);
      words.destroy();
      out.destroy();
    }));

  it("f16 decode variants (fp8_decode_*_h) on every code, when the adapter has shader-f16", (ctx) =>
    withGpu(async (gpu) => {
      if (!gpu.caps.f16) ctx.skip(`adapter '${gpu.caps.adapterName}' has no shader-f16`);
      const b = new WgslBuilder("fp8_decode_h_test").enable("f16");
      b.bind("out", "u32", "read_write");
      for (const f of FORMATS) b.helper(fp8DecodeName(f, "f16"), wgslFp8Decode(f, "f16"));
      const wgsl = b.build([WG], ["let i = gid.x;", "out[i] = bitcast<u32>(vec2<f16>(fp8_decode_e4m3_h(i), fp8_decode_e5m2_h(i)));"]);
      const pipeline = await createComputePipeline(gpu, wgsl, "main", "fp8_decode_h_test");
      const out = createBuffer(gpu, 256 * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC, "decoded_h");
      await runKernel(gpu, pipeline, [out], [1, 1, 1]);
      const got = new Uint32Array(await readBuffer(gpu, out, 256 * 4));
      const f16 = f16InputBits(); // f16 bits → exact f32 bits
      const bad: string[] = [];
      FORMATS.forEach((f, k) => {
        const want = decodeFP8(ALL_CODES, f);
        for (let c = 0; c < 256; c++) {
          const h = (got[c] >>> (16 * k)) & 0xffff;
          if (!sameF32(f16[h], want[c])) bad.push(`${f} 0x${c.toString(16)}: f16 0x${h.toString(16)}, want ${want[c]}`);
        }
      });
      expect(bad).toEqual([]);
      out.destroy();
    }));

  it("encode (both formats × both saturation modes) and bf16_encode of binary16 + bf16 ties + 1M random f32", () =>
    withGpu(async (gpu) => {
      // Inputs: every binary16; four bf16 rounding neighbours of every bf16 pattern; 1M seeded f32.
      const ties = new Uint32Array(65536 * 4);
      for (let h = 0; h < 65536; h++) {
        const t = h << 16;
        ties.set([t >>> 0, (t | 0x7fff) >>> 0, (t | 0x8000) >>> 0, (t | 0x8001) >>> 0], 4 * h);
      }
      const parts = [f16InputBits(), ties, fp8RandomInputBits()];
      const inputs = new Uint32Array(parts.reduce((n, p) => n + p.length, 0));
      parts.reduce((o, p) => (inputs.set(p, o), o + p.length), 0);
      const n = inputs.length;
      const nw = n / 4; // whole words: every part is a multiple of 4 long
      const variants = FORMATS.flatMap((f) => [true, false].map((saturate) => ({ f, saturate })));

      const b = new WgslBuilder("fp8_encode_test");
      b.bind("x", "f32", "read");
      b.bind("out", "u32", "read_write");
      b.constant("NW", "u32", nw);
      b.helper("fp8_pack", wgslFp8Pack()).helper("bf16_encode", wgslBf16Encode());
      for (const v of variants) b.helper(fp8EncodeName(v.f, v.saturate), wgslFp8Encode(v.f, v.saturate));
      const wgsl = b.build(
        [WG],
        [
          `let w = gid.x + gid.y * ${WG}u * nwg.x;`,
          "if (w >= NW) { return; }",
          "let x0 = x[4u * w]; let x1 = x[4u * w + 1u]; let x2 = x[4u * w + 2u]; let x3 = x[4u * w + 3u];",
          ...variants.map((v, k) => {
            const e = fp8EncodeName(v.f, v.saturate);
            return `out[${k}u * NW + w] = fp8_pack4(${e}(x0), ${e}(x1), ${e}(x2), ${e}(x3));`;
          }),
          `out[${variants.length}u * NW + 2u * w] = bf16_pack2(bf16_encode(x0), bf16_encode(x1));`,
          `out[${variants.length}u * NW + 2u * w + 1u] = bf16_pack2(bf16_encode(x2), bf16_encode(x3));`,
        ],
      );
      const pipeline = await createComputePipeline(gpu, wgsl, "main", "fp8_encode_test");
      const xBuf = uploadBuffer(gpu, inputs, "inputs");
      const outWords = (variants.length + 2) * nw;
      const out = createBuffer(gpu, outWords * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC, "encoded");
      const groups = Math.ceil(nw / WG);
      const gx = Math.min(groups, 32768);
      const t0 = performance.now();
      await runKernel(gpu, pipeline, [xBuf, out], [gx, Math.ceil(groups / gx), 1]);
      const got = new Uint32Array(await readBuffer(gpu, out, outWords * 4));
      const ms = performance.now() - t0;
      xBuf.destroy();
      out.destroy();

      const xs = new Float32Array(inputs.buffer);
      const bad: string[] = [];
      variants.forEach((v, k) => {
        const want = packFP8(encodeFP8(xs, v.f, { saturate: v.saturate }));
        bad.push(...firstWordMismatches(got.subarray(k * nw, (k + 1) * nw), want, inputs, `${v.f} ${v.saturate ? "sat" : "nosat"}`));
      });
      const bf = encodeBF16(xs);
      const bfGot = new Uint16Array(got.buffer, variants.length * nw * 4, n);
      for (let i = 0; i < n && bad.length < 20; i++) {
        if (bfGot[i] !== bf[i]) bad.push(`bf16 input #${i} bits 0x${inputs[i].toString(16)}: got 0x${bfGot[i].toString(16)}, want 0x${bf[i].toString(16)}`);
      }
      expect(bad).toEqual([]);
      expect(n).toBe(65536 + 4 * 65536 + 1_000_000);
      console.log(`fp8-wgsl: encoded ${n} inputs × ${variants.length} FP8 variants + bf16 on '${gpu.caps.adapterName}' in ${ms.toFixed(0)} ms`);
    }));

  it("reports WGSL errors with line:col and the source line", () =>
    withGpu(async (gpu) => {
      const bad = "fn f() -> u32 {\n  return 1.5;\n}\n@compute @workgroup_size(1) fn main() { _ = f(); }\n";
      await expect(createComputePipeline(gpu, bad, "main", "broken_kernel")).rejects.toThrow(/broken_kernel[\s\S]*2:\d+: [\s\S]*return 1\.5;/);
    }));
});
