// The subgroup-matrix (tensor-core) path of the GEMM generator: FP8 operands decoded a word at a
// time to f16 into workgroup memory once per K step (bk deep), sgRows×sgCols subgroups each owning
// a block of fragM×fragN mma-shaped f32 results, and the shared epilogue of gemm-io.ts.
import type { WgslBuilder } from "../wgsl.js";
import type { GemmConfig, GemmTile } from "./gemm.js";
import { amaxReduce, type Operand, type SharedLayout, scalarStore, sharedLayout, stageTile } from "./gemm-io.js";

/** Invocations of a subgroup-matrix workgroup. */
export const sgmmThreads = (t: GemmTile): number => t.sgRows * t.sgCols * t.subgroupSize;

/** Bytes of workgroup memory the path declares for tile t (f16 operand copies + f32 result staging). */
export function sgmmSharedBytes(cfg: Pick<GemmConfig, "transA" | "transB">, t: GemmTile): number {
  const a = sharedLayout({ kRows: cfg.transA, span: t.bm }, t);
  const b = sharedLayout({ kRows: !cfg.transB, span: t.bn }, t);
  return 2 * (a.rows * a.stride + b.rows * b.stride) + 4 * t.sgRows * t.sgCols * t.mma.M * t.mma.N + 4;
}

/**
 * subgroupMatrixLoad of the fragment at k = ks, m (left) or n (right) = `off` within the tile.
 * Left fragments are m×k and right ones k×n, so a copy with rows of k is column-major for a left
 * fragment and row-major for a right one; a copy with rows of m or n the reverse.
 */
function fragmentLoad(type: string, op: Operand, lay: SharedLayout, ks: number, off: string, left: boolean): string {
  const major = lay.kFirst === left ? "col_major" : "row_major";
  const offset = lay.kFirst ? `${ks * lay.stride}u + ${off}` : `(${off}) * ${lay.stride}u + ${ks}u`;
  return `subgroupMatrixLoad<${type}, ${major}>(&sh_${op.name}, ${offset}, ${lay.stride}u)`;
}

/**
 * Declares the workgroup memory and the helper `gemm_sgmm(lidx, sg, wid)` main calls. Each K step
 * stages both tiles as f16, then runs bk/mma.K rounds of fragment loads + multiply-accumulates; the
 * results then pass one at a time through a per-subgroup f32 staging block into the epilogue.
 * Offsets depend on subgroup_id, which the uniformity analysis cannot prove uniform within a
 * subgroup (it is), hence the diagnostic filter: a function attribute, as the builder writes no
 * directives.
 */
export function sgmmHelper(b: WgslBuilder, cfg: GemmConfig, t: GemmTile, ops: [Operand, Operand]): string {
  const threads = sgmmThreads(t);
  const [la, lb] = ops.map((op) => sharedLayout(op, t));
  b.workgroupArray("sh_a", "f16", la.rows * la.stride).workgroupArray("sh_b", "f16", lb.rows * lb.stride);
  b.workgroupArray("sh_c", "f32", t.sgRows * t.sgCols * t.mma.M * t.mma.N);
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
  const inner: string[] = [];
  for (const ks of kSteps) {
    inner.push(`{`);
    for (const i of fi) inner.push(`  let l${i} = ${fragmentLoad(left, ops[0], la, ks, `row_base + ${i * mm}u`, true)};`);
    for (const j of fj) inner.push(`  let r${j} = ${fragmentLoad(right, ops[1], lb, ks, `col_base + ${j * mn}u`, false)};`);
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
  const body = [
    `let tile_m = wid.y * ${t.bm}u;`,
    `let tile_n = wid.x * ${t.bn}u;`,
    `let row_base = (sg / ${t.sgCols}u) * ${fragM * mm}u;`,
    `let col_base = (sg % ${t.sgCols}u) * ${fragN * mn}u;`,
    ...pairs.map(([i, j]) => `var acc${i}_${j}: ${result};`),
    `for (var k0 = 0u; k0 < ${cfg.K}u; k0 += ${t.bk}u) {`,
    ...stageTile(ops[0], t, threads, scalarStore(ops[0], la)).map((l) => `  ${l}`),
    ...stageTile(ops[1], t, threads, scalarStore(ops[1], lb)).map((l) => `  ${l}`),
    "  workgroupBarrier();",
    ...inner.map((l) => `  ${l}`),
    "  workgroupBarrier();",
    "}",
    "var lmax = 0.0;",
    ...pairs.flatMap(([i, j]) => epi(i, j)),
    ...amaxReduce(cfg),
  ];
  return [
    "@diagnostic(off, chromium.subgroup_matrix_uniformity)",
    "fn gemm_sgmm(lidx: u32, sg: u32, wid: vec3<u32>) {",
    ...body.map((l) => `  ${l}`),
    "}",
  ].join("\n");
}
