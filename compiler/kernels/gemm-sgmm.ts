// The subgroup-matrix (tensor-core) path of the GEMM generator: FP8 operands decoded a word at a
// time to f16 into workgroup memory once per K step (bk deep), sgRows×sgCols subgroups each owning
// a block of fragM×fragN mma-shaped f32 results, and the shared epilogue of gemm-io.ts.
import type { WgslBuilder } from "../wgsl.js";
import type { GemmConfig, GemmTile } from "./gemm.js";
import { amaxReduce, type Operand, rawFetchHelper, type SharedLayout, sharedAt, sharedLayout } from "./gemm-io.js";

/** Invocations of a subgroup-matrix workgroup. */
export const sgmmThreads = (t: GemmTile): number => t.sgRows * t.sgCols * t.subgroupSize;

/** Bytes of workgroup memory the path declares for tile t (f16 operand copies, `stages` of each, + f32 result staging). */
export function sgmmSharedBytes(cfg: Pick<GemmConfig, "transA" | "transB">, t: GemmTile): number {
  const a = sharedLayout({ kRows: cfg.transA, span: t.bm }, t);
  const b = sharedLayout({ kRows: !cfg.transB, span: t.bn }, t);
  return 2 * t.stages * (a.rows * a.stride + b.rows * b.stride) + 4 * t.sgRows * t.sgCols * t.mma.M * t.mma.N + 4;
}

/**
 * subgroupMatrixLoad of the fragment at k = ks, m (left) or n (right) = `off` within the tile.
 * Left fragments are m×k and right ones k×n, so a copy with rows of k is column-major for a left
 * fragment and row-major for a right one; a copy with rows of m or n the reverse.
 */
function fragmentLoad(type: string, op: Operand, lay: SharedLayout, ks: number, off: string, left: boolean, buf: string): string {
  const major = lay.kFirst === left ? "col_major" : "row_major";
  const offset = `${buf}${lay.kFirst ? `${ks * lay.stride}u + ${off}` : `(${off}) * ${lay.stride}u + ${ks}u`}`;
  return `subgroupMatrixLoad<${type}, ${major}>(&sh_${op.name}, ${offset}, ${lay.stride}u)`;
}

/**
 * One operand's share of staging for one invocation: its four-element groups of the K step's tile
 * (thread-constant positions, computed once before the K loop), fetched raw from storage into
 * registers `p<x><i>`, then decoded and written to a copy in workgroup memory.
 */
function stagingPlan(b: WgslBuilder, op: Operand, lay: SharedLayout, t: GemmTile, threads: number) {
  const raw = rawFetchHelper(b, op, "f16");
  const tr = op.kRows ? t.bk : op.span;
  const tc = op.kRows ? op.span : t.bk;
  const groups = (tr * tc) / 4;
  const its = Array.from({ length: Math.ceil(groups / threads) }, (_, i) => i);
  const x = op.name;
  const ragged = groups % threads !== 0;
  // Element q of group i sits at s<x><i> + q·step in its copy (see sharedLayout).
  const step = !op.kRows && lay.kFirst ? lay.stride : 1;
  const setup = its.flatMap((i) => [
    `let ${x}_g${i} = lidx + ${i * threads}u;`,
    `let ${x}_ti${i} = ${x}_g${i} / ${tc / 4}u;`,
    `let ${x}_tj${i} = (${x}_g${i} % ${tc / 4}u) * 4u;`,
    `let ${x}_s${i} = ${sharedAt(op, lay, op.kRows ? `${x}_ti${i}` : `${x}_tj${i}`, op.kRows ? `${x}_tj${i}` : `${x}_ti${i}`).replace(/^sh_\w+\[(.*)\]$/, "$1")};`,
    ...(ragged ? [`let ${x}_ok${i} = ${x}_g${i} < ${groups}u;`] : []),
  ]);
  const guard = (i: number, line: string) => (ragged ? `if (${x}_ok${i}) { ${line} }` : line);
  const at = (i: number, k: string) => (op.kRows ? `${k} + ${x}_ti${i}, ${op.base} + ${x}_tj${i}` : `${op.base} + ${x}_ti${i}, ${k} + ${x}_tj${i}`);
  return {
    setup,
    declare: its.map((i) => `var p${x}${i}: ${raw.type};`),
    /** Loads the groups of the K step starting at k into the registers. */
    fetch: (k: string) => its.map((i) => guard(i, `p${x}${i} = fetch_${x}(${at(i, k)});`)),
    /** Decodes the registers into the copy at f16 offset `buf`. */
    store: (buf: string) =>
      its.map((i) => {
        const v = `v${x}${i}`;
        const writes = [0, 1, 2, 3].map((q) => `sh_${x}[${buf}${x}_s${i}${q ? ` + ${q * step}u` : ""}] = ${v}[${q}];`);
        return guard(i, `let ${v} = ${raw.decode(`p${x}${i}`)}; ${writes.join(" ")}`);
      }),
  };
}

/**
 * Declares the workgroup memory and the helper `gemm_sgmm(lidx, sg, wid)` main calls. Each K step
 * stages both tiles as f16, then runs bk/mma.K rounds of fragment loads + multiply-accumulates; the
 * results then pass one at a time through a per-subgroup f32 staging block into the epilogue.
 * With `stages: 2` the copies are double-buffered: step i's MMAs read buffer i % 2 while the next
 * step's words, loaded into registers before those MMAs, are decoded into the other buffer after
 * them, so a step needs one barrier and its global loads overlap the tensor-core work.
 * Offsets depend on subgroup_id, which the uniformity analysis cannot prove uniform within a
 * subgroup (it is), hence the diagnostic filter: a function attribute, as the builder writes no
 * directives.
 */
export function sgmmHelper(b: WgslBuilder, cfg: GemmConfig, t: GemmTile, ops: [Operand, Operand]): string {
  const threads = sgmmThreads(t);
  const [la, lb] = ops.map((op) => sharedLayout(op, t));
  const sizes = [la.rows * la.stride, lb.rows * lb.stride];
  b.workgroupArray("sh_a", "f16", sizes[0] * t.stages).workgroupArray("sh_b", "f16", sizes[1] * t.stages);
  b.workgroupArray("sh_c", "f32", t.sgRows * t.sgCols * t.mma.M * t.mma.N);
  const plans = [stagingPlan(b, ops[0], la, t, threads), stagingPlan(b, ops[1], lb, t, threads)];
  const { M: mm, N: mn, K: mk } = t.mma;
  const fragM = t.bm / (t.sgRows * mm);
  const fragN = t.bn / (t.sgCols * mn);
  const left = `subgroup_matrix_left<f16, ${mk}, ${mm}>`;
  const right = `subgroup_matrix_right<f16, ${mn}, ${mk}>`;
  const result = `subgroup_matrix_result<f32, ${mn}, ${mm}>`;
  const fi = Array.from({ length: fragM }, (_, i) => i);
  const fj = Array.from({ length: fragN }, (_, j) => j);
  const pairs = fi.flatMap((i) => fj.map((j) => [i, j] as const));
  const kSteps = Array.from({ length: t.bk / mk }, (_, s) => s * mk);
  const block = mm * mn;
  const double = t.stages === 2;
  // Buffer offsets (f16 elements) of the copies the MMAs read: `cur_a`/`cur_b` when double-buffered.
  const [bufA, bufB] = double ? ["cur_a + ", "cur_b + "] : ["", ""];
  const inner: string[] = [];
  for (const ks of kSteps) {
    inner.push(`{`);
    for (const i of fi) inner.push(`  let l${i} = ${fragmentLoad(left, ops[0], la, ks, `row_base + ${i * mm}u`, true, bufA)};`);
    for (const j of fj) inner.push(`  let r${j} = ${fragmentLoad(right, ops[1], lb, ks, `col_base + ${j * mn}u`, false, bufB)};`);
    for (const [i, j] of pairs) inner.push(`  acc${i}_${j} = subgroupMatrixMultiplyAccumulate(l${i}, r${j}, acc${i}_${j});`);
    inner.push(`}`);
  }
  const groups = t.sgRows * t.sgCols * (block / 4);
  const epi = (i: number, j: number) => [
    `subgroupMatrixStore<row_major>(&sh_c, sg * ${block}u, acc${i}_${j}, ${mn}u);`,
    "workgroupBarrier();",
    `for (var g = lidx; g < ${groups}u; g += ${threads}u) {`,
    `  let s = g / ${block / 4}u;`,
    `  let e = (g % ${block / 4}u) * 4u;`,
    `  let m = tile_m + (s / ${t.sgCols}u) * ${fragM * mm}u + ${i * mm}u + e / ${mn}u;`,
    `  let n = tile_n + (s % ${t.sgCols}u) * ${fragN * mn}u + ${j * mn}u + e % ${mn}u;`,
    `  let o = s * ${block}u + e;`,
    `  lmax = max(lmax, epilogue(m, n, vec4<f32>(sh_c[o], sh_c[o + 1u], sh_c[o + 2u], sh_c[o + 3u])));`,
    "}",
    "workgroupBarrier();",
  ];
  const indent = (ls: string[]) => ls.map((l) => `  ${l}`);
  const fetch = (k: string) => plans.flatMap((p) => p.fetch(k));
  const kLoop = double
    ? [
        ...fetch("0u"),
        ...plans[0].store(""),
        ...plans[1].store(""),
        "workgroupBarrier();",
        "var cur_a = 0u;",
        "var cur_b = 0u;",
        `for (var k0 = 0u; k0 < ${cfg.K}u; k0 += ${t.bk}u) {`,
        ...indent(fetch(`k0 + ${t.bk}u`)),
        ...indent(inner),
        `  let next_a = ${sizes[0]}u - cur_a;`,
        `  let next_b = ${sizes[1]}u - cur_b;`,
        ...indent(plans[0].store("next_a + ")),
        ...indent(plans[1].store("next_b + ")),
        "  workgroupBarrier();",
        "  cur_a = next_a;",
        "  cur_b = next_b;",
        "}",
      ]
    : [
        `for (var k0 = 0u; k0 < ${cfg.K}u; k0 += ${t.bk}u) {`,
        ...indent(fetch("k0")),
        ...indent(plans[0].store("")),
        ...indent(plans[1].store("")),
        "  workgroupBarrier();",
        ...indent(inner),
        "  workgroupBarrier();",
        "}",
      ];
  const body = [
    `let tile_m = wid.y * ${t.bm}u;`,
    `let tile_n = wid.x * ${t.bn}u;`,
    `let row_base = (sg / ${t.sgCols}u) * ${fragM * mm}u;`,
    `let col_base = (sg % ${t.sgCols}u) * ${fragN * mn}u;`,
    ...pairs.map(([i, j]) => `var acc${i}_${j}: ${result};`),
    ...plans.flatMap((p) => [...p.setup, ...p.declare]),
    ...kLoop,
    "var lmax = 0.0;",
    ...pairs.flatMap(([i, j]) => epi(i, j)),
    ...amaxReduce(cfg),
  ];
  return [
    "@diagnostic(off, chromium.subgroup_matrix_uniformity)",
    "fn gemm_sgmm(lidx: u32, sg: u32, wid: vec3<u32>) {",
    ...indent(body),
    "}",
  ].join("\n");
}
