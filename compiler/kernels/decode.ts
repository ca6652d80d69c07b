// Kernels of the decode ops (sampling with a KV cache, docs/ir.md Decode): the cache write and
// attention of a few new query rows over a cache [batch, kvHeads, context, headDim]. RoPE at a
// position offset is elementwise.ts `rope` with `offset`. The position is read from a one-word
// binding, so one compiled pipeline serves every call of a given number of new rows.
import { WgslBuilder, fmtF32 } from "../wgsl.js";
import { FLAT_WG, type KernelSource, check, fp8Codec, finish, grid, isPow2, segReduce, shared } from "./reduce.js";

export interface KvWriteConfig {
  name: string;
  batch: number;
  /** New rows per sequence. */
  rows: number;
  kvHeads: number;
  headDim: number;
  context: number;
  wg?: number;
}

/** cache[b, h, position + r, :] = x[b·rows + r, h·headDim : (h+1)·headDim], in place. Bindings: x, position, cache. */
export function kvWrite(cfg: KvWriteConfig): KernelSource {
  const wg = cfg.wg ?? 128;
  const { rows, kvHeads: H, headDim: Dh, context: C } = cfg;
  const n = cfg.batch * rows * H * Dh;
  const b = new WgslBuilder(cfg.name, `kv write ${cfg.batch}×${rows} rows into ${H}×${C}×${Dh}`);
  b.bind("x", "f32");
  b.bind("position", "i32");
  b.bind("cache", "f32", "read_write");
  const body = [
    `let t = ${FLAT_WG} * ${wg}u + lidx;`,
    `if (t >= ${n}u) { return; }`,
    `let d = t % ${Dh}u; let h = (t / ${Dh}u) % ${H}u; let br = t / ${H * Dh}u;`,
    `let bb = br / ${rows}u; let r = br % ${rows}u;`,
    `let p = u32(position[0]) + r;`,
    `if (p >= ${C}u) { return; }`,
    `cache[((bb * ${H}u + h) * ${C}u + p) * ${Dh}u + d] = x[t];`,
  ];
  return finish(b, wg, body, grid(Math.ceil(n / wg)));
}

export interface CachedAttentionConfig {
  name: string;
  batch: number;
  /** New query rows per sequence (seqLen of the decode graph). */
  rows: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  context: number;
  scale: number;
  causal: boolean;
  /** FP8DPA: P is fake-cast to E4M3 through the slot whose scale is `pscale[0]` (delayed: the stored scale). */
  fp8P?: { saturate: boolean };
  wg?: number;
}

/**
 * One workgroup per (sequence, head, new row): scores over the visible cache positions (≤ position
 * + row when causal) in workgroup memory, softmax by tree reductions, then O = P·V with one
 * invocation per output column. Bindings: q, k, v, position, o, [pscale].
 */
export function cachedAttention(cfg: CachedAttentionConfig): KernelSource {
  const wg = cfg.wg ?? 64;
  check(isPow2(wg), `${cfg.name}: workgroup size ${wg} is not a power of two`);
  const { rows, heads: H, kvHeads: KV, headDim: Dh, context: C } = cfg;
  check(H % KV === 0, `${cfg.name}: heads ${H} not a multiple of kv_heads ${KV}`);
  const b = new WgslBuilder(cfg.name, `cached attention ${cfg.batch}×${rows} rows, ${H}/${KV} heads × ${Dh} over ${C} positions${cfg.fp8P ? ", P in E4M3" : ""}`);
  b.bind("q", "f32");
  b.bind("k", "f32");
  b.bind("v", "f32");
  b.bind("position", "i32");
  b.bind("o", "f32", "read_write");
  const sp = shared(b, "scores", "f32", C);
  const maxOf = segReduce(b, wg, wg, "max");
  const sumOf = segReduce(b, wg, wg, "sum");
  let castP = "p";
  if (cfg.fp8P) {
    b.bind("pscale", "f32");
    const c = fp8Codec(b, "e4m3", cfg.fp8P.saturate);
    castP = `${c.dec(c.enc("p * pscale[0]"))} / pscale[0]`;
  }
  const body = [
    `let row = ${FLAT_WG};`,
    `let i = row % ${rows}u; let h = (row / ${rows}u) % ${H}u; let bb = row / ${rows * H}u;`,
    `let qo = (bb * ${rows}u + i) * ${H * Dh}u + h * ${Dh}u;`,
    `let ko = (bb * ${KV}u + h / ${H / KV}u) * ${C * Dh}u;`,
    `let n = min(u32(position[0]) + ${cfg.causal ? "i + 1u" : `${rows}u`}, ${C}u);`,
    `var m = ${fmtF32(-3.4028234663852886e38)};`,
    `for (var j = lidx; j < n; j = j + ${wg}u) {`,
    `  var s = 0.0;`,
    `  for (var d = 0u; d < ${Dh}u; d = d + 1u) { s = s + q[qo + d] * k[ko + j * ${Dh}u + d]; }`,
    `  s = s * ${fmtF32(cfg.scale)};`,
    `  ${sp}[j] = s; m = max(m, s);`,
    `}`,
    `let mx = ${maxOf}(m, lidx);`,
    `var z = 0.0;`,
    `for (var j = lidx; j < n; j = j + ${wg}u) { let e = exp(${sp}[j] - mx); ${sp}[j] = e; z = z + e; }`,
    `let zt = ${sumOf}(z, lidx);`,
    `for (var j = lidx; j < n; j = j + ${wg}u) { let p = ${sp}[j] / zt; ${sp}[j] = ${castP}; }`,
    `workgroupBarrier();`,
    `for (var d = lidx; d < ${Dh}u; d = d + ${wg}u) {`,
    `  var acc = 0.0;`,
    `  for (var j = 0u; j < n; j = j + 1u) { acc = acc + ${sp}[j] * v[ko + j * ${Dh}u + d]; }`,
    `  o[qo + d] = acc;`,
    `}`,
  ];
  return finish(b, wg, body, grid(cfg.batch * H * rows));
}
