// Fused causal attention for CPU adapters (llvmpipe/lavapipe): one invocation per query row (fwd,
// dQ) or key row (dK/dV), no workgroup memory and no barriers. llvmpipe runs a workgroup as SIMD
// chunks of 8 invocations and each barrier as a switch through every chunk, so the tiled kernels of
// attention.ts spend most of their time switching; here a workgroup is the consecutive rows of one
// head, which makes the other side's row (K/V for a query row, Q/dO for a key row) the same address
// in every lane: llvmpipe loads it once (uniform), and only the invocation's own row is gathered.
// Same bindings and results as attention.ts (see AttentionPass), including FP8DPA: P and dS
// fake-quantised, amax(P) by "fwd" and amax(dS) by "bwd_dkv". The forward takes a stats pass first
// (row max and sum online), then P = exp(S − lse) normalised, as attention.ts's FP8 path does.
import type { Fp8Format } from "../ir.js";
import { WgslBuilder, fmtF32 } from "../wgsl.js";
import { type AttentionConfig, type AttentionPass, bindAttention } from "./attention.js";
import { type Codec, type KernelSource, atomicMaxOf, check, finish, fp8Codec, nextPow2, unpack4 } from "./reduce.js";

const NEG = fmtF32(-1e30); // masked logit: exp(NEG − m) = 0 for any finite row max m

/**
 * Rows (invocations) per workgroup: 8, one SIMD chunk of llvmpipe on AVX2, so that the causal key
 * loop of a workgroup (up to its last row) wastes little on rows above the diagonal. Side by side on
 * lavapipe (B16 T64 H4/2 Dh24 FP8DPA, the three passes): 8 rows ~52 ms, 16 ~59, 64 ~83.
 */
export function attentionRowsPerWorkgroup(seqLen: number): number {
  return Math.min(8, nextPow2(seqLen));
}

/** Generates one attention pass for a CPU adapter (bindings as attention.ts's, in order). */
export function attentionRows(cfg: AttentionConfig, pass: AttentionPass, rowsPerWorkgroup = attentionRowsPerWorkgroup(cfg.seqLen)): KernelSource {
  const { batch, seqLen: T, heads: H, kvHeads: HKV, headDim: DH, causal, fp8 } = cfg;
  check(H % HKV === 0, `attention: heads ${H} not a multiple of kv_heads ${HKV}`);
  const packed = fp8 && !fp8.f32Inputs ? fp8 : undefined;
  check(DH % 4 === 0, `attention (row per invocation): head_dim ${DH} is not a multiple of 4`);
  const RW = rowsPerWorkgroup;
  const b = new WgslBuilder(`${cfg.name}_${pass}`, `attention ${pass} (row per invocation) B=${batch} T=${T} H=${H}/${HKV} Dh=${DH}${fp8 ? " fp8dpa" : ""}`);
  b.constant("T", "u32", T).constant("H", "u32", H).constant("HKV", "u32", HKV).constant("DH", "u32", DH);
  b.constant("GROUP", "u32", H / HKV).constant("QW", "u32", H * DH).constant("KW", "u32", HKV * DH).constant("SCALE", "f32", cfg.scale);
  const codecs: Partial<Record<Fp8Format, Codec>> = {};
  const codec = (fmt: Fp8Format): Codec => (codecs[fmt] ??= fp8Codec(b, fmt, true));

  // Rows as vec4s (head_dim % 4 == 0): f32 tensors bound as vec4<f32>, FP8 ones as u32 words of four codes.
  const amaxIdx = bindAttention(b, pass, fp8, packed ? "u32" : "vec4<f32>", "vec4<f32>");

  // Four elements c4·4.. of the head starting at column col0 of token row `row` (f32, or decoded FP8 codes × scale_inv).
  const loader = (src: string, width: string, fmt?: Fp8Format, sinv?: number): string => {
    const fn = `ld_${src}`;
    const at = `(row * ${width} + col0) / 4u + c4`;
    const body = fmt
      ? `let w = ${src}[${at}];\n  return vec4<f32>(${unpack4(codec(fmt), "w").join(", ")}) * scales[${sinv}];`
      : `return ${src}[${at}];`;
    b.helper(fn, `fn ${fn}(row: u32, col0: u32, c4: u32) -> vec4<f32> {\n  ${body}\n}`);
    return fn;
  };
  const ldQ = loader("q", "QW", packed && "e4m3", packed?.scaleInv.q);
  const ldK = loader("k", "KW", packed && "e4m3", packed?.scaleInv.k);
  const ldV = loader("v", "KW", packed && "e4m3", packed?.scaleInv.v);
  const ldDO = pass === "fwd" ? "" : loader("dout", "QW", packed && "e5m2", packed?.scaleInv.dO);
  const fq = (x: string, fmt: Fp8Format, s: string): string =>
    fp8 ? `${codec(fmt).dec(codec(fmt).enc(`${x} * ${s}`))} * (1.0 / ${s})` : x;

  const D4 = `${DH / 4}u`;
  const loop = (inner: string): string => `for (var c = 0u; c < ${D4}; c = c + 1u) { ${inner} }`;
  /** This invocation's own row into a private array (clamped past T: those lanes store nothing). */
  const own = (arr: string, ld: string, row: string, col0: string): string[] => [
    `var ${arr}: array<vec4<f32>, ${DH / 4}>;`,
    loop(`${arr}[c] = ${ld}(${row}, ${col0}, c);`),
  ];
  /** dot of a private row with the (uniform) row `row` of an input; the same code in every pass, so S is bit-identical. */
  const dot = (out: string, arr: string, ld: string, row: string, col0: string): string =>
    `var ${out} = 0.0; ${loop(`${out} = ${out} + dot(${arr}[c], ${ld}(${row}, ${col0}, c));`)}`;
  const axpy = (acc: string, coef: string, ld: string, row: string, col0: string): string =>
    loop(`${acc}[c] = ${acc}[c] + ${coef} * ${ld}(${row}, ${col0}, c);`);
  const store = (dst: string, width: string, row: string, col0: string, acc: string, factor: string): string =>
    loop(`${dst}[(${row} * ${width} + ${col0}) / 4u + c] = ${acc}[c] * ${factor};`);

  const body: string[] = [`var amx = 0.0;`];
  if (fp8) body.push(`let s_p = scales[${fp8.scale.p}]; let s_ds = scales[${fp8.scale.dS}];`);
  if (pass !== "bwd_dkv") {
    // wid.y: (batch, head); the workgroup's rows q0.. of it; keys up to the workgroup's last row.
    body.push(
      `let bh = wid.y; let bb = bh / H; let h = bh % H; let g = h / GROUP;`,
      `let q0 = wid.x * ${RW}u; let i = q0 + lidx; let ic = min(i, T - 1u); let qrow = bb * T + ic;`,
      `let j_end = ${causal ? `min(T, q0 + ${RW}u)` : "T"};`,
      ...own("qv", ldQ, "qrow", "h * DH"),
    );
    const valid = causal ? "j <= ic" : "true";
    const score = (out: string): string[] => [dot("sacc", "qv", ldK, "bb * T + j", "g * DH"), `let ${out} = select(${NEG}, sacc * SCALE, ${valid});`];
    if (pass === "fwd") {
      body.push(
        `var m = ${NEG}; var l = 0.0;`,
        `for (var j = 0u; j < j_end; j = j + 1u) {`,
        ...score("s").map((x) => `  ${x}`),
        `  let m_new = max(m, s); l = l * exp(m - m_new) + exp(s - m_new); m = m_new;`,
        `}`,
        `let lse_r = m + log(l);`,
        `var oacc: array<vec4<f32>, ${DH / 4}>;`,
        `for (var j = 0u; j < j_end; j = j + 1u) {`,
        ...score("s").map((x) => `  ${x}`),
        `  let p = exp(s - lse_r); amx = max(amx, p);`,
        `  let pq = ${fq("p", "e4m3", "s_p")};`,
        `  ${axpy("oacc", "pq", ldV, "bb * T + j", "g * DH")}`,
        `}`,
        `if (i < T) {`,
        `  ${store("o", "QW", "qrow", "h * DH", "oacc", "1.0")}`,
        `  lse[bh * T + i] = lse_r;`,
        `}`,
      );
    } else {
      body.push(
        ...own("dov", ldDO, "qrow", "h * DH"),
        `var dr = 0.0; ${loop("dr = dr + dot(dov[c], o[(qrow * QW + h * DH) / 4u + c]);")}`,
        `let lse_r = lse[bh * T + ic];`,
        `if (i < T) { delta[bh * T + i] = dr; }`,
        `var dqa: array<vec4<f32>, ${DH / 4}>;`,
        `for (var j = 0u; j < j_end; j = j + 1u) {`,
        ...score("s").map((x) => `  ${x}`),
        `  let p = select(0.0, exp(s - lse_r), ${valid});`,
        `  ${dot("dp", "dov", ldV, "bb * T + j", "g * DH")}`,
        `  let dsq = ${fq("p * (dp - dr)", "e5m2", "s_ds")};`,
        `  ${axpy("dqa", "dsq", ldK, "bb * T + j", "g * DH")}`,
        `}`,
        `if (i < T) { ${store("dq", "QW", "qrow", "h * DH", "dqa", "SCALE")} }`,
      );
    }
  } else {
    // wid.y: (batch, kv head); the workgroup's key rows k0..; every query head of the GQA group, queries from k0 on.
    const valid = causal ? "ii >= jc" : "true";
    body.push(
      `let bg = wid.y; let bb = bg / HKV; let g = bg % HKV;`,
      `let k0 = wid.x * ${RW}u; let j = k0 + lidx; let jc = min(j, T - 1u); let krow = bb * T + jc;`,
      ...own("kv", ldK, "krow", "g * DH"),
      ...own("vv", ldV, "krow", "g * DH"),
      `var dka: array<vec4<f32>, ${DH / 4}>; var dva: array<vec4<f32>, ${DH / 4}>;`,
      `for (var hh = 0u; hh < GROUP; hh = hh + 1u) {`,
      `  let h = g * GROUP + hh; let bh = bb * H + h;`,
      `  for (var ii = ${causal ? "k0" : "0u"}; ii < T; ii = ii + 1u) {`,
      `    let qrow = bb * T + ii;`,
      `    ${dot("sacc", "kv", ldQ, "qrow", "h * DH")}`,
      `    ${dot("dp", "vv", ldDO, "qrow", "h * DH")}`,
      `    let p = select(0.0, exp(sacc * SCALE - lse[bh * T + ii]), ${valid});`,
      `    let ds = p * (dp - delta[bh * T + ii]); amx = max(amx, abs(ds));`,
      `    let pq = ${fq("p", "e4m3", "s_p")};`,
      `    let dsq = ${fq("ds", "e5m2", "s_ds")};`,
      `    ${axpy("dva", "pq", ldDO, "qrow", "h * DH")}`,
      `    ${axpy("dka", "dsq", ldQ, "qrow", "h * DH")}`,
      `  }`,
      `}`,
      `if (j < T) {`,
      `  ${store("dk", "KW", "krow", "g * DH", "dka", "SCALE")}`,
      `  ${store("dv", "KW", "krow", "g * DH", "dva", "1.0")}`,
      `}`,
    );
  }
  if (amaxIdx !== undefined) body.push(...atomicMaxOf(b, "bitcast<u32>(amx)", `amax[${amaxIdx}]`, cfg.subgroups ?? cfg.subgroupSize !== undefined));
  const grid: [number, number, number] = [Math.ceil(T / RW), batch * (pass === "bwd_dkv" ? HKV : H), 1];
  return finish(b, RW, body, grid);
}
