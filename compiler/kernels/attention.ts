// Fused causal attention, FlashAttention-2 style (papers.md §3.2): a forward with an online softmax
// that writes O and the row log-sum-exp, and a backward in two deterministic kernels (dQ, which also
// writes D = rowsum(dO⊙O); then dK/dV), with no T×T buffer. GQA and FP8DPA casts are options.
import type { Fp8Format } from "../ir.js";
import { type ElemType, WgslBuilder, fmtF32 } from "../wgsl.js";
import { type Codec, type KernelSource, atomicMaxOf, check, finish, fp8Codec, isPow2, laneReduce, unpack4 } from "./reduce.js";

/**
 * FP8DPA (papers.md §3.2): Q, K, V arrive as E4M3 and dO as E5M2, four codes per u32, each decoded
 * with its per-tensor scale_inv. P is fake-quantised to E4M3 before P·V and Pᵀ·dO, dS to E5M2 before
 * dS·K and dSᵀ·Q: fq(x) = decode(encode(x·s))·(1/s). Softmax, D and dS = P⊙(dP − D) stay f32, and P
 * is the normalised softmax (the forward takes a stats pass first, so P does not depend on tiling).
 */
export interface AttentionFp8 {
  /** Indices into the `scales` binding of the scale_inv of each FP8 input. */
  scaleInv: { q: number; k: number; v: number; dO: number };
  /** Indices into `scales` of the quantisation scales s of P (E4M3) and dS (E5M2). */
  scale: { p: number; dS: number };
  /** Indices into the `amax` binding: max |P| (recorded by "fwd") and max |dS| ("bwd_dkv"). */
  amax?: { p: number; dS: number };
  /** Q, K, V and dO arrive as f32 values (already fake-quantised by the graph's quantize nodes); `scaleInv` is then unused. */
  f32Inputs?: boolean;
}

/** Query rows per tile (br), key rows per tile (bc), invocations sharing one row (lanes). */
export interface AttentionTiles {
  br: number;
  bc: number;
  lanes: number;
}

export interface AttentionConfig {
  name: string;
  batch: number;
  seqLen: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Softmax scale τ: S = τ·Q·Kᵀ. */
  scale: number;
  causal: boolean;
  fp8?: AttentionFp8;
  tiles?: AttentionTiles;
  /** Workgroup memory the tiles may use (the device's maxComputeWorkgroupStorageSize). */
  maxSharedBytes?: number;
  /**
   * The adapter's minimum subgroup size when it has `subgroups`: the row max/sum over a row's lanes
   * then use subgroup shuffles instead of workgroup-memory trees (no barriers).
   */
  subgroupSize?: number;
  /** The adapter has subgroups (set on CPU adapters too, where subgroupSize is not): amax by subgroupMax. */
  subgroups?: boolean;
}

/**
 * "fwd": q, k, v → o, lse. "bwd_dq": q, k, v, o, dout, lse → delta, dq. "bwd_dkv": q, k, v, dout,
 * lse, delta → dk, dv (run after bwd_dq). lse/delta are f32 [batch·heads·seqLen], (b·H + h)·T + t.
 */
export type AttentionPass = "fwd" | "bwd_dq" | "bwd_dkv";

const NEG = fmtF32(-1e30); // masked logit: exp(NEG − m) = 0 for any finite row max m

/** Floats of workgroup memory a pass uses with given tiles. */
function sharedFloats(pass: AttentionPass, dh: number, t: AttentionTiles): number {
  const { br, bc, lanes } = t;
  const rs = dh + 1; // padded row stride
  if (pass === "fwd") return br * rs + 2 * bc * rs + br * bc + br * lanes;
  if (pass === "bwd_dq") return 2 * br * rs + 2 * bc * rs + br * bc + br * lanes;
  return 2 * bc * rs + 2 * br * rs + 2 * br * bc + 2 * br + bc * lanes;
}

/** The largest tiles (br·bc, then lanes) that fit the shared-memory budget. */
export function attentionTiles(cfg: AttentionConfig, pass: AttentionPass): AttentionTiles {
  if (cfg.tiles) return cfg.tiles;
  const budget = (cfg.maxSharedBytes ?? 16384) / 4;
  // Measured on the H100 at head_dim 64 (bench/attention.ts --fma-tiles, docs/perf.md third session):
  // more, smaller workgroups and 16 shuffling lanes per row beat the largest tiles that fit —
  // fwd 32×16/8 (f32 2.08 ms against 2.95 for 64×32/4), backward 32×32/16 (6.96 against 8.92).
  if ((cfg.subgroupSize ?? 0) >= 16 && cfg.headDim % 16 === 0 && cfg.headDim <= 64) {
    const t = pass === "fwd" ? { br: 32, bc: 16, lanes: 8 } : { br: 32, bc: 32, lanes: 16 };
    if (sharedFloats(pass, cfg.headDim, t) <= budget) return t;
  }
  const sizes = [64, 32, 16, 8, 4];
  let best: AttentionTiles | undefined;
  for (const br of sizes)
    for (const bc of sizes)
      for (const lanes of [8, 4]) {
        const t = { br, bc, lanes };
        const rows = pass === "bwd_dkv" ? bc : br;
        if (lanes > Math.min(br, bc, cfg.headDim) || rows * lanes > 256) continue;
        if (br > 2 * bc || bc > 2 * br || sharedFloats(pass, cfg.headDim, t) > budget) continue;
        if (!best || br * bc * 8 + lanes > best.br * best.bc * 8 + best.lanes) best = t;
      }
  if (!best) throw new Error(`attention: no tile fits ${budget * 4} bytes of workgroup memory at head_dim ${cfg.headDim}`);
  return best;
}

/**
 * Declares a pass's bindings in the documented order (see AttentionPass), the contract every
 * attention generator keeps: inputs q, k, v (and dout) as `input` elements (f32, vec4<f32>, or u32
 * words of four FP8 codes), o/dq/dk/dv as `rows` elements, lse/delta f32, then with FP8DPA `scales`
 * and (fwd, bwd_dkv) `amax`. Returns the index into `amax` this pass records, if any.
 */
export function bindAttention(b: WgslBuilder, pass: AttentionPass, fp8: AttentionFp8 | undefined, input: ElemType, rows: ElemType): number | undefined {
  b.bind("q", input);
  b.bind("k", input);
  b.bind("v", input);
  if (pass === "fwd") b.bind("o", rows, "read_write");
  if (pass === "bwd_dq") b.bind("o", rows);
  if (pass !== "fwd") b.bind("dout", input);
  b.bind("lse", "f32", pass === "fwd" ? "read_write" : "read");
  if (pass !== "fwd") b.bind("delta", "f32", pass === "bwd_dq" ? "read_write" : "read");
  for (const g of pass === "fwd" ? [] : pass === "bwd_dq" ? ["dq"] : ["dk", "dv"]) b.bind(g, rows, "read_write");
  const amaxIdx = fp8?.amax ? (pass === "fwd" ? fp8.amax.p : pass === "bwd_dkv" ? fp8.amax.dS : undefined) : undefined;
  if (fp8) b.bind("scales", "f32");
  if (amaxIdx !== undefined) b.bind("amax", "atomic<u32>", "read_write");
  return amaxIdx;
}

/** Generates one attention kernel (see AttentionPass for its bindings, in order). */
export function attention(cfg: AttentionConfig, pass: AttentionPass): KernelSource {
  const { batch, seqLen: T, heads: H, kvHeads: HKV, headDim: DH, causal, fp8 } = cfg;
  const t = attentionTiles(cfg, pass);
  const { br: BR, bc: BC, lanes: L } = t;
  const rowsPerWg = pass === "bwd_dkv" ? BC : BR; // the rows whose results this workgroup owns
  const across = pass === "bwd_dkv" ? BR : BC; // the other side, split over the lanes
  const NT = rowsPerWg * L;
  check(H % HKV === 0, `attention: heads ${H} not a multiple of kv_heads ${HKV}`);
  check([BR, BC, L].every(isPow2) && across % L === 0 && DH % L === 0, `attention: bad tiles ${JSON.stringify(t)} for head_dim ${DH}`);
  check(NT <= 1024, `attention: ${NT} invocations per workgroup`);
  const packed = fp8 && !fp8.f32Inputs ? fp8 : undefined; // FP8 codes in, four per u32
  check(!packed || DH % 4 === 0, "attention: FP8 needs head_dim % 4 == 0 (four codes per u32)");
  const budget = cfg.maxSharedBytes ?? 16384;
  check(sharedFloats(pass, DH, t) * 4 <= budget, `attention: tiles ${JSON.stringify(t)} need more than ${budget} bytes of workgroup memory`);

  const b = new WgslBuilder(`${cfg.name}_${pass}`, `attention ${pass} B=${batch} T=${T} H=${H}/${HKV} Dh=${DH}${fp8 ? " fp8dpa" : ""}`);
  b.constant("T", "u32", T).constant("H", "u32", H).constant("HKV", "u32", HKV).constant("DH", "u32", DH);
  b.constant("GROUP", "u32", H / HKV).constant("NT", "u32", NT).constant("SCALE", "f32", cfg.scale);
  const inT = packed ? "u32" : "f32";
  const codecs: Partial<Record<Fp8Format, Codec>> = {};
  const codec = (fmt: Fp8Format): Codec => (codecs[fmt] ??= fp8Codec(b, fmt, true));

  const amaxIdx = bindAttention(b, pass, fp8, inT, "f32");

  // Workgroup tiles: q/dO rows [BR, RS], k/v rows [BC, RS], probabilities [rows, across]. Rows are
  // RS = DH + 1 apart so the lanes of a dot product (different rows, same d) hit different banks.
  b.constant("RS", "u32", DH + 1);
  const qRows = (n: string): string => (b.workgroupArray(n, "f32", BR * (DH + 1)), n);
  const kRows = (n: string): string => (b.workgroupArray(n, "f32", BC * (DH + 1)), n);
  const qs = qRows("qs");
  const ks = kRows("ks");
  const vs = kRows("vs");
  const dos = pass === "fwd" ? "" : qRows("dos");
  b.workgroupArray("pt", "f32", BR * BC);
  if (pass === "bwd_dkv") b.workgroupArray("dst", "f32", BR * BC).workgroupArray("lse_s", "f32", BR).workgroupArray("d_s", "f32", BR);
  const rowMax = laneReduce(b, NT, L, cfg.subgroupSize, "max");
  const rowSum = laneReduce(b, NT, L, cfg.subgroupSize, "sum");

  /** Loads rows t0.. of one head of `src` into `dst` (zeros past T), decoding FP8 words. */
  const load = (dst: string, src: string, rows: number, t0: string, width: number, head: string, fmt?: Fp8Format, sinv?: number): string[] => {
    const V = fmt ? 4 : 1;
    const per = DH / V;
    const c = fmt ? codec(fmt) : undefined;
    const vals = c ? unpack4(c, "w").map((x) => `${x} * scales[${sinv}]`) : ["w"];
    return [
      `for (var e = lidx; e < ${rows * per}u; e = e + NT) {`,
      `  let rr = e / ${per}u; let tt = ${t0} + rr; let at = rr * RS + (e % ${per}u)${V > 1 ? ` * ${V}u` : ""};`,
      `  if (tt < T) {`,
      `    let w = ${src}[((bb * T + tt) * ${width}u + ${head} * DH)${V > 1 ? ` / ${V}u` : ""} + e % ${per}u];`,
      ...vals.map((x, k) => `    ${dst}[at + ${k}u] = ${x};`),
      `  } else {`,
      ...vals.map((_, k) => `    ${dst}[at + ${k}u] = 0.0;`),
      `  }`,
      `}`,
    ];
  };
  const QW = H * DH;
  const KW = HKV * DH;
  const loadQ = (t0: string): string[] => load(qs, "q", BR, t0, QW, "h", packed && "e4m3", packed?.scaleInv.q);
  const loadK = (t0: string): string[] => load(ks, "k", BC, t0, KW, "g", packed && "e4m3", packed?.scaleInv.k);
  const loadV = (t0: string): string[] => load(vs, "v", BC, t0, KW, "g", packed && "e4m3", packed?.scaleInv.v);
  const loadDO = (t0: string): string[] => load(dos, "dout", BR, t0, QW, "h", packed && "e5m2", packed?.scaleInv.dO);
  /** dot of q-side row `i` of `a` with k-side row `j` of `bArr`; the same loop in every pass keeps S bit-identical. */
  const dot = (out: string, a: string, i: string, bArr: string, j: string): string[] => [
    `var ${out} = 0.0;`,
    `for (var d = 0u; d < DH; d = d + 1u) { ${out} = ${out} + ${a}[${i} * RS + d] * ${bArr}[${j} * RS + d]; }`,
  ];
  const fq = (x: string, fmt: Fp8Format, s: string): string =>
    fp8 ? `${codec(fmt).dec(codec(fmt).enc(`${x} * ${s}`))} * (1.0 / ${s})` : x;
  const valid = (qi: string, kj: string): string => `${kj} < T && ${qi} < T${causal ? ` && ${kj} <= ${qi}` : ""}`;
  const DL = DH / L;
  const A = across / L;
  const accum = (acc: string, coef: string, src: string, row: string): string =>
    `for (var x = 0u; x < ${DL}u; x = x + 1u) { ${acc}[x] = ${acc}[x] + ${coef} * ${src}[${row} * RS + l + x * ${L}u]; }`;
  const store = (dst: string, width: number, head: string, row: string, acc: string, factor: string): string =>
    `for (var x = 0u; x < ${DL}u; x = x + 1u) { ${dst}[(bb * T + ${row}) * ${width}u + ${head} * DH + l + x * ${L}u] = ${acc}[x] * ${factor}; }`;
  const kvTiles = causal ? `(min(T, q0 + ${BR}u) + ${BC - 1}u) / ${BC}u` : `${Math.ceil(T / BC)}u`;

  const body: string[] = [`let r = lidx / ${L}u; let l = lidx % ${L}u;`];
  if (fp8) body.push(`let s_p = scales[${fp8.scale.p}]; let s_ds = scales[${fp8.scale.dS}];`);
  body.push(`var amx = 0.0;`);
  if (pass !== "bwd_dkv") {
    body.push(`let bh = wid.y; let bb = bh / H; let h = bh % H; let g = h / GROUP;`);
    body.push(`let q0 = wid.x * ${BR}u; let i = q0 + r; let row = bh * T + min(i, T - 1u);`, ...loadQ("q0"));
  }
  if (pass === "fwd") {
    // Online softmax (f32), or with FP8 a stats pass then P = exp(S − lse) exactly, then quantised.
    const scores = (): string[] => [
      `var s: array<f32, ${A}>;`,
      `var smax = ${NEG};`,
      `for (var c = 0u; c < ${A}u; c = c + 1u) {`,
      `  let j = l + c * ${L}u;`,
      ...dot("acc", qs, "r", ks, "j").map((x) => `  ${x}`),
      `  s[c] = select(${NEG}, acc * SCALE, ${valid("i", "k0 + j")});`,
      `  smax = max(smax, s[c]);`,
      `}`,
    ];
    const tileLoop = (inner: string[], withV: boolean): string[] => [
      `for (var kt = 0u; kt < ${kvTiles}; kt = kt + 1u) {`,
      `  let k0 = kt * ${BC}u;`,
      `  workgroupBarrier();`,
      ...loadK("k0").map((x) => `  ${x}`),
      ...(withV ? loadV("k0").map((x) => `  ${x}`) : []),
      `  workgroupBarrier();`,
      ...[...scores(), ...inner].map((x) => `  ${x}`),
      `}`,
    ];
    const online = (withPV: boolean): string[] => [
      `let m_new = max(m, ${rowMax("smax")});`,
      `let alpha = exp(m - m_new);`,
      `var psum = 0.0;`,
      `for (var c = 0u; c < ${A}u; c = c + 1u) { let p = exp(s[c] - m_new); psum = psum + p;${withPV ? ` pt[r * ${BC}u + l + c * ${L}u] = p;` : ""} }`,
      `lsum = lsum * alpha + ${rowSum("psum")};`,
      `m = m_new;`,
      ...(withPV ? [`for (var x = 0u; x < ${DL}u; x = x + 1u) { oacc[x] = oacc[x] * alpha; }`] : []),
    ];
    const pv = [`workgroupBarrier();`, `for (var j = 0u; j < ${BC}u; j = j + 1u) {`, `  ${accum("oacc", `pt[r * ${BC}u + j]`, vs, "j")}`, `}`];
    body.push(`var m = ${NEG}; var lsum = 0.0; var oacc: array<f32, ${DL}>;`);
    if (!fp8) {
      body.push(...tileLoop([...online(true), ...pv], true), `let lse_r = m + log(lsum); let inv = 1.0 / lsum;`);
    } else {
      const quant = [
        `for (var c = 0u; c < ${A}u; c = c + 1u) {`,
        `  let p = exp(s[c] - lse_r); amx = max(amx, p);`,
        `  pt[r * ${BC}u + l + c * ${L}u] = ${fq("p", "e4m3", "s_p")};`,
        `}`,
      ];
      body.push(...tileLoop(online(false), false), `let lse_r = m + log(lsum); let inv = 1.0;`, ...tileLoop([...quant, ...pv], true));
    }
    body.push(`if (i < T) {`, `  ${store("o", QW, "h", "i", "oacc", "inv")}`, `  if (l == 0u) { lse[bh * T + i] = lse_r; }`, `}`);
  } else if (pass === "bwd_dq") {
    body.push(
      ...loadDO("q0"),
      `workgroupBarrier();`,
      `var dpart = 0.0;`,
      `for (var x = 0u; x < ${DL}u; x = x + 1u) {`,
      `  let d = l + x * ${L}u;`,
      `  dpart = dpart + dos[r * RS + d] * select(0.0, o[(bb * T + min(i, T - 1u)) * ${QW}u + h * DH + d], i < T);`,
      `}`,
      `let dr = ${rowSum("dpart")};`,
      `let lse_r = select(0.0, lse[row], i < T);`,
      `if (i < T && l == 0u) { delta[row] = dr; }`,
      `var dqa: array<f32, ${DL}>;`,
      `for (var kt = 0u; kt < ${kvTiles}; kt = kt + 1u) {`,
      `  let k0 = kt * ${BC}u;`,
      `  workgroupBarrier();`,
      ...[...loadK("k0"), ...loadV("k0")].map((x) => `  ${x}`),
      `  workgroupBarrier();`,
      `  for (var c = 0u; c < ${A}u; c = c + 1u) {`,
      `    let j = l + c * ${L}u;`,
      ...[...dot("sacc", qs, "r", ks, "j"), ...dot("dp", dos, "r", vs, "j")].map((x) => `    ${x}`),
      `    let p = select(0.0, exp(sacc * SCALE - lse_r), ${valid("i", "k0 + j")});`,
      `    pt[r * ${BC}u + j] = ${fq("p * (dp - dr)", "e5m2", "s_ds")};`,
      `  }`,
      `  workgroupBarrier();`,
      `  for (var j = 0u; j < ${BC}u; j = j + 1u) { ${accum("dqa", `pt[r * ${BC}u + j]`, ks, "j")} }`,
      `}`,
      `if (i < T) { ${store("dq", QW, "h", "i", "dqa", "SCALE")} }`,
    );
  } else {
    // One workgroup per key tile of one kv head; it visits every query head of its GQA group.
    body.push(
      `let bg = wid.y; let bb = bg / HKV; let g = bg % HKV;`,
      `let k0 = wid.x * ${BC}u; let j = k0 + r;`,
      ...loadK("k0"),
      ...loadV("k0"),
      `var dka: array<f32, ${DL}>; var dva: array<f32, ${DL}>;`,
      `for (var hh = 0u; hh < GROUP; hh = hh + 1u) {`,
      `  let h = g * GROUP + hh; let bh = bb * H + h;`,
      `  for (var qt = ${causal ? `k0 / ${BR}u` : "0u"}; qt < ${Math.ceil(T / BR)}u; qt = qt + 1u) {`,
      `    let q0 = qt * ${BR}u;`,
      `    workgroupBarrier();`,
      ...[...loadQ("q0"), ...loadDO("q0")].map((x) => `    ${x}`),
      `    for (var e = lidx; e < ${BR}u; e = e + NT) { let ii = min(q0 + e, T - 1u); lse_s[e] = lse[bh * T + ii]; d_s[e] = delta[bh * T + ii]; }`,
      `    workgroupBarrier();`,
      `    for (var c = 0u; c < ${A}u; c = c + 1u) {`,
      `      let ii = l + c * ${L}u; let i = q0 + ii;`,
      ...[...dot("sacc", qs, "ii", ks, "r"), ...dot("dp", dos, "ii", vs, "r")].map((x) => `      ${x}`),
      `      let p = select(0.0, exp(sacc * SCALE - lse_s[ii]), ${valid("i", "j")});`,
      `      let ds = p * (dp - d_s[ii]); amx = max(amx, abs(ds));`,
      `      pt[r * ${BR}u + ii] = ${fq("p", "e4m3", "s_p")};`,
      `      dst[r * ${BR}u + ii] = ${fq("ds", "e5m2", "s_ds")};`,
      `    }`,
      `    workgroupBarrier();`,
      `    for (var ii = 0u; ii < ${BR}u; ii = ii + 1u) {`,
      `      ${accum("dva", `pt[r * ${BR}u + ii]`, dos, "ii")}`,
      `      ${accum("dka", `dst[r * ${BR}u + ii]`, qs, "ii")}`,
      `    }`,
      `  }`,
      `}`,
      `if (j < T) {`,
      `  ${store("dk", KW, "g", "j", "dka", "SCALE")}`,
      `  ${store("dv", KW, "g", "j", "dva", "1.0")}`,
      `}`,
    );
  }
  if (amaxIdx !== undefined) {
    body.push(...atomicMaxOf(b, "bitcast<u32>(amx)", `amax[${amaxIdx}]`, cfg.subgroups ?? cfg.subgroupSize !== undefined));
  }
  const grid: [number, number, number] =
    pass === "bwd_dkv" ? [Math.ceil(T / BC), batch * HKV, 1] : [Math.ceil(T / BR), batch * H, 1];
  return finish(b, NT, body, grid);
}
