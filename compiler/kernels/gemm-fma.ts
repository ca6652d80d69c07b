// The FMA path of the GEMM generator (every adapter), in two variants that share the I/O code of
// gemm-io.ts and differ in how operands reach the registers:
// - "shared": the GPU kernel. Both operand tiles are decoded once per K step into workgroup memory
//   (vec4 rows of k), and each invocation accumulates a tm×tn register block from it. Rows and
//   columns of the block come in groups of 4 spaced by the invocation grid, so that neighbouring
//   invocations read neighbouring vec4s (no bank conflicts, wide shared loads).
// - "direct": the CPU kernel. No workgroup memory and no barriers (costly on llvmpipe, and pointless
//   behind CPU caches): each invocation loads its operands straight from storage, 4 values of K at a
//   time, and accumulates a tm×tn block of contiguous rows and columns.
import type { WgslBuilder } from "../wgsl.js";
import type { GemmConfig, GemmTile } from "./gemm.js";
import { amaxReduce, type Operand, stageTile } from "./gemm-io.js";

/** Invocations of an FMA workgroup: one per tm×tn block of the bm×bn tile. */
export const fmaThreads = (t: GemmTile): number => (t.bm / t.tm) * (t.bn / t.tn);

// nwg.z is always 1: the bound only hides K's trip count, because fully unrolling the few K steps of
// a small GEMM costs lavapipe's LLVM seconds per kernel and gains a GPU nothing.
const HIDDEN_K_END = (K: number) => `let k_end = select(${K}u, 0u, nwg.z == 0u);`;

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** Epilogue calls over the block: row(i) and column-group col(d) offsets within the tile. */
function finish(cfg: GemmConfig, t: GemmTile, row: (i: number) => string, col: (d: number) => string): string[] {
  const groups = t.tn / 4;
  return [
    "var lmax = 0.0;",
    ...range(t.tm).flatMap((i) =>
      range(groups).map((d) => `lmax = max(lmax, epilogue(tile_m + ${row(i)}, tile_n + ${col(d)}, acc[${i * groups + d}]));`),
    ),
    ...amaxReduce(cfg),
  ];
}

/** The "shared" variant's body; declares sh_a/sh_b (vec4<f32>, [bk][span/4]) on `b`. */
export function fmaSharedBody(b: WgslBuilder, cfg: GemmConfig, t: GemmTile, ops: [Operand, Operand]): string[] {
  const threads = fmaThreads(t);
  const rowThreads = t.bm / t.tm;
  const colThreads = t.bn / t.tn;
  for (const op of ops) b.workgroupArray(`sh_${op.name}`, "vec4<f32>", (t.bk * op.span) / 4);
  // Storage rows along K arrive as 4 consecutive m/n (one vec4 store); rows along m/n as 4 k (a
  // component of 4 vec4s each).
  const store = (op: Operand) => (ti: string, tj: string, v: string) =>
    op.kRows
      ? [`sh_${op.name}[${ti} * ${op.span / 4}u + ${tj} / 4u] = ${v};`]
      : range(4).map((q) => `sh_${op.name}[(${tj} + ${q}u) * ${op.span / 4}u + ${ti} / 4u][${ti} % 4u] = ${v}[${q}];`);
  // Row i of the block: groups of 4 spaced by the invocation grid when tm is a multiple of 4 (vec4
  // reads); otherwise tm consecutive rows read one component at a time.
  const rowGrouped = t.tm % 4 === 0;
  const row = (i: number) => (rowGrouped ? `(${(i >> 2) * rowThreads}u + ty) * 4u + ${i & 3}u` : `ty * ${t.tm}u + ${i}u`);
  const aVal = (i: number) => (rowGrouped ? `a${i >> 2}[${i & 3}]` : `sh_a[kk * ${t.bm / 4}u + (${row(i)}) / 4u][(${row(i)}) % 4u]`);
  const col = (d: number) => `(${d * colThreads}u + tx) * 4u`;
  const groups = t.tn / 4;
  return [
    `let tile_m = wid.y * ${t.bm}u;`,
    `let tile_n = wid.x * ${t.bn}u;`,
    `let tx = lidx % ${colThreads}u;`,
    `let ty = lidx / ${colThreads}u;`,
    `var acc: array<vec4<f32>, ${t.tm * groups}>;`,
    HIDDEN_K_END(cfg.K),
    `for (var k0 = 0u; k0 < k_end; k0 += ${t.bk}u) {`,
    ...ops.flatMap((op) => stageTile(op, t, threads, store(op))).map((l) => `  ${l}`),
    "  workgroupBarrier();",
    `  for (var kk = 0u; kk < ${t.bk}u; kk++) {`,
    ...(rowGrouped ? range(t.tm / 4).map((c) => `    let a${c} = sh_a[kk * ${t.bm / 4}u + ${c * rowThreads}u + ty];`) : []),
    ...range(groups).map((d) => `    let b${d} = sh_b[kk * ${t.bn / 4}u + ${d * colThreads}u + tx];`),
    ...range(t.tm).flatMap((i) => range(groups).map((d) => `    acc[${i * groups + d}] = fma(vec4<f32>(${aVal(i)}), b${d}, acc[${i * groups + d}]);`)),
    "  }",
    "  workgroupBarrier();",
    "}",
    ...finish(cfg, t, row, col),
  ];
}

/** The "direct" variant's body: K in steps of bk, each unrolled into bk/4 chunks of 4. */
export function fmaDirectBody(cfg: GemmConfig, t: GemmTile, [opA, opB]: [Operand, Operand]): string[] {
  const colThreads = t.bn / t.tn;
  const groups = t.tn / 4;
  // Register names of one K chunk: a(i, q) is A[m_i, k + q]; bVec(q, d) is B[k + q, n_{4d..4d+3}].
  const loadsA = opA.kRows
    ? range(4).flatMap((q) => range(t.tm / 4).map((c) => `let a${q}_${c} = load_a(k + ${q}u, m0 + ${4 * c}u);`))
    : range(t.tm).map((i) => `let a${i} = load_a(m0 + ${i}u, k);`);
  const aVal = (i: number, q: number) => (opA.kRows ? `a${q}_${i >> 2}[${i & 3}]` : `a${i}[${q}]`);
  const loadsB = opB.kRows
    ? range(4).flatMap((q) => range(groups).map((d) => `let b${q}_${d} = load_b(k + ${q}u, n0 + ${4 * d}u);`))
    : range(t.tn).map((j) => `let b${j} = load_b(n0 + ${j}u, k);`);
  const bVec = (q: number, d: number) =>
    opB.kRows ? `b${q}_${d}` : `vec4<f32>(${range(4).map((r) => `b${4 * d + r}[${q}]`).join(", ")})`;
  const chunk = [
    ...loadsA,
    ...loadsB,
    ...range(4).flatMap((q) =>
      range(t.tm).flatMap((i) => range(groups).map((d) => `acc[${i * groups + d}] = fma(vec4<f32>(${aVal(i, q)}), ${bVec(q, d)}, acc[${i * groups + d}]);`)),
    ),
  ];
  return [
    `let tile_m = wid.y * ${t.bm}u;`,
    `let tile_n = wid.x * ${t.bn}u;`,
    // One invocation per column block when bm = tm: A's addresses then depend on the workgroup only,
    // so llvmpipe (which vectorises across invocations) loads A once for all lanes, not by gather.
    ...(t.bm === t.tm ? ["let tx = lidx;", "let ty = 0u;", "let m0 = tile_m;"] : [`let tx = lidx % ${colThreads}u;`, `let ty = lidx / ${colThreads}u;`, `let m0 = tile_m + ty * ${t.tm}u;`]),
    `let n0 = tile_n + tx * ${t.tn}u;`,
    `var acc: array<vec4<f32>, ${t.tm * groups}>;`,
    HIDDEN_K_END(cfg.K),
    `for (var k0 = 0u; k0 < k_end; k0 += ${t.bk}u) {`,
    ...range(t.bk / 4).flatMap((s) => [`  {`, `    let k = k0 + ${4 * s}u;`, ...chunk.map((l) => `    ${l}`), "  }"]),
    "}",
    ...finish(cfg, t, (i) => `ty * ${t.tm}u + ${i}u`, (d) => `tx * ${t.tn}u + ${4 * d}u`),
  ];
}
