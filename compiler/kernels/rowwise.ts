// Row-wise kernels, one row per workgroup with tree reductions in workgroup memory: RMSNorm and
// LayerNorm forward and backward (papers.md §5), softmax, cross-entropy fused with the logits, and
// row absmax. One skeleton (rows loop, row held in registers, cast epilogue) serves every op.
import { WgslBuilder, fmtF32 } from "../wgsl.js";
import { CastWriter, F32_OUT, FLAT_WG, type KernelSource, type OutCast, check, finish, grid, isPow2, laneReduce, nextPow2, segReduce, shared } from "./reduce.js";

/**
 * Rows of `width` elements; each workgroup handles `rowsPerWorkgroup` consecutive rows, `wg / lanes`
 * of them at a time (one row per `lanes` invocations).
 */
export interface RowShape {
  name: string;
  rows: number;
  width: number;
  /** Invocations per workgroup (a power of two; default 64), at most: fewer when rowsPerWorkgroup·lanes is smaller. */
  wg?: number;
  /** Default: the rows one pass of the workgroup covers (wg / lanes). */
  rowsPerWorkgroup?: number;
  /**
   * Invocations sharing one row (a power of two ≤ wg). Default: rowLanes(width, subgroupSize). 1 means
   * a row per invocation, no reduction at all; ≤ subgroupSize reduces by subgroup shuffles; larger
   * by a tree in workgroup memory (barriers: costly on CPU adapters, whose workgroups run on one thread).
   */
  lanes?: number;
  /**
   * The adapter's minimum subgroup size when it has the `subgroups` feature (then `enable subgroups`
   * is emitted): row reductions over ≤ that many lanes use subgroupShuffleXor, no barriers. Assumes
   * a 1-D workgroup's subgroups are aligned runs of consecutive local_invocation_index (true of
   * every Vulkan driver we run on; checked by the kernel tests on each adapter).
   */
  subgroupSize?: number;
}

/**
 * The default invocations per row. With subgroups: enough lanes that each holds ≤ 8 values, up to
 * the subgroup size (shuffle reductions, no barriers), or a whole subgroup while that leaves ≤ 64
 * values per lane. Without: a row per invocation up to 256 values (no reduction at all: on a CPU
 * adapter that is 10–20× faster than a workgroup tree), else lanes holding 32 values each.
 * Wider rows fall back to a tree in workgroup memory.
 */
export function rowLanes(width: number, subgroupSize?: number, wg = 64): number {
  const holding = (n: number): number => Math.min(wg, nextPow2(Math.ceil(width / n)));
  if (subgroupSize) {
    if (holding(8) <= subgroupSize) return holding(8);
    if (width <= 64 * subgroupSize && subgroupSize <= wg) return subgroupSize;
  } else if (width <= 256) return 1;
  return holding(32);
}

function lanesOf(s: RowShape): number {
  return s.lanes ?? rowLanes(s.width, s.subgroupSize, s.wg ?? 64);
}

/** `param`: a learned [width] tensor; a number: a frozen constant gain (FOG's QK-norm uses 1). */
export type Gain = "none" | "param" | number;

/** A norm over rows of `width` = the IR attr `group` (rows = numel / group, e.g. QK-norm per head). */
export interface NormConfig extends RowShape {
  kind: "rms" | "layer";
  eps: number;
  gain: Gain;
  /** LayerNorm only: a learned [width] bias. */
  bias?: boolean;
  /** Forward: the cast of y; backward: the cast of dx. */
  out?: OutCast;
}

/**
 * Backward of a norm, recomputing the row statistics from x. `wrt` picks the results: dx, and
 * column sums of dy⊙x̂ (gain) and dy (bias), written as partial rows [workgroups, width] — one
 * row per workgroup of `rowsPerWorkgroup` rows; reduce.ts sumTo adds them when there are several.
 */
export interface NormGradConfig extends NormConfig {
  wrt: { x: boolean; gain: boolean; bias: boolean };
}

/** Number of workgroups (= partial rows of the column sums) a row kernel uses. */
export function rowWorkgroups(s: RowShape): number {
  return Math.ceil(s.rows / rowsPerWorkgroup(s));
}

function rowsPerWorkgroup(s: RowShape): number {
  return s.rowsPerWorkgroup ?? (s.wg ?? 64) / lanesOf(s);
}

interface RowSpec {
  shape: RowShape;
  /** Input bindings read per element as `<name>_r[slot]` (loaded into registers once per row). */
  rowInputs: string[];
  /** Extra bindings declared before the outputs (gain, targets, ...). */
  declare(b: WgslBuilder): void;
  out?: { name: string; cast: OutCast };
  /** Lines before the rows loop (accumulators), given the number of element slots per invocation. */
  init?: (slots: number) => string[];
  /** Per row, after the row is loaded: statistics; `red(op, expr)` reduces a per-element expression. */
  row(ctx: RowCtx): string[];
  /** Per element value of the output, given the row statistics. */
  value?: (ctx: RowCtx) => string;
  /** After the rows loop (write accumulators); per-element code may use `col`/`ok`/`slot`. */
  after?: (ctx: RowCtx) => string[];
}

interface RowCtx {
  /** Lines that reduce the per-element `expr` (in terms of `col`, `ok`, `slot`) over the row into `let name`. */
  red(name: string, op: "sum" | "max", expr: string): string[];
  /** Lines that run `lines` for each element the invocation owns (`col`, `ok`, `slot` in scope; `ok` is false past the row's end and on a row slot past the workgroup's rows). */
  each(lines: string[]): string[];
  /**
   * After the rows loop: lines that add the per-invocation scalar `value` over the workgroup's row
   * slots into `let name` (every invocation gets it; uniform control flow).
   */
  acrossRows(name: string, value: string): string[];
  /**
   * After the rows loop: lines that write, for each `acc` (a per-invocation array over its element
   * slots), the column sums over the workgroup's row slots into `out[wgi * W + col]`. Staged through
   * workgroup memory a chunk of columns at a time, added in row-slot order (deterministic).
   */
  columnSums(sums: { acc: string; out: string }[]): string[];
  width: number;
}

function rowKernel(spec: RowSpec): KernelSource {
  const { name, rows, width } = spec.shape;
  const L = lanesOf(spec.shape);
  const R = rowsPerWorkgroup(spec.shape);
  check(isPow2(spec.shape.wg ?? 64), `${name}: workgroup size ${spec.shape.wg} is not a power of two`);
  // No wider than the workgroup's rows need: idle row slots still run every barrier.
  const wg = Math.min(spec.shape.wg ?? 64, Math.max(L, nextPow2(R) * L));
  const P = wg / L; // rows one pass of the workgroup covers
  const cast = spec.out?.cast ?? F32_OUT;
  const V = cast.dtype === "f32" ? 1 : cast.dtype === "bf16" ? 2 : 4;
  check(isPow2(wg), `${name}: workgroup size ${wg} is not a power of two`);
  check(isPow2(L) && L <= wg, `${name}: lanes ${L} must be a power of two ≤ the workgroup size ${wg}`);
  check(Number.isInteger(R) && R >= 1, `${name}: rowsPerWorkgroup ${R} must be a positive integer`);
  check(width % V === 0, `${name}: width ${width} is not a multiple of ${V} (packed ${cast.dtype} output)`);
  const K = Math.ceil(width / (L * V)); // element groups per invocation
  const b = new WgslBuilder(name, `rowwise ${rows}×${width}`);
  b.constant("W", "u32", width).constant("ROWS", "u32", rows).constant("RPW", "u32", R);
  for (const n of spec.rowInputs) b.bind(n, "f32");
  spec.declare(b);
  const writer = spec.out ? new CastWriter(b, spec.out.name, spec.out.cast, wg) : undefined;

  const each = (lines: string[]): string[] => [
    `for (var k = 0u; k < ${K}u; k = k + 1u) {`,
    `  for (var u = 0u; u < ${V}u; u = u + 1u) {`,
    `    let slot = k * ${V}u + u; let col = (k * ${L}u + lane) * ${V}u + u; let ok = live && col < W;`,
    ...lines.map((l) => `    ${l}`),
    `  }`,
    `}`,
  ];
  const reducers = { sum: laneReduce(b, wg, L, spec.shape.subgroupSize, "sum"), max: laneReduce(b, wg, L, spec.shape.subgroupSize, "max") };
  const red = (nm: string, op: "sum" | "max", expr: string): string[] => [
    `var ${nm}_p = ${op === "sum" ? "0.0" : fmtF32(-3.4e38)};`,
    ...each([`if (ok) { ${nm}_p = ${op === "sum" ? `${nm}_p + ${expr}` : `max(${nm}_p, ${expr})`}; }`]),
    `let ${nm} = ${reducers[op](`${nm}_p`)};`,
  ];
  const acrossRows = (nm: string, value: string): string[] =>
    P === 1 ? [`let ${nm} = ${value};`] : [`let ${nm} = ${segReduce(b, wg, P, "sum", L)}(${value}, lidx);`];
  const columnSums = (sums: { acc: string; out: string }[]): string[] => {
    if (P === 1) return each(sums.map(({ acc, out }) => `if (ok) { ${out}[wgi * W + col] = ${acc}[slot]; }`));
    const C = Math.min(width, Math.max(1, Math.floor(2048 / P))); // columns per chunk: ≤ 8 KiB per sum
    const lines = [`for (var c0 = 0u; c0 < W; c0 = c0 + ${C}u) {`, `  workgroupBarrier();`];
    for (const { acc } of sums) {
      shared(b, `${acc}_cs`, "f32", P * C);
      lines.push(...each([`if (ok && col >= c0 && col < c0 + ${C}u) { ${acc}_cs[rslot * ${C}u + col - c0] = ${acc}[slot]; }`]).map((l) => `  ${l}`));
    }
    lines.push(`  workgroupBarrier();`, `  for (var cc = lidx; cc < min(${C}u, W - c0); cc = cc + ${wg}u) {`);
    for (const { acc, out } of sums)
      lines.push(`    var ${acc}_t = 0.0;`, `    for (var rs = 0u; rs < ${P}u; rs = rs + 1u) { ${acc}_t = ${acc}_t + ${acc}_cs[rs * ${C}u + cc]; }`, `    ${out}[wgi * W + c0 + cc] = ${acc}_t;`);
    lines.push(`  }`, `}`);
    return lines;
  };
  const ctx: RowCtx = { red, each, acrossRows, columnSums, width };
  // A pass covers rows r0 .. r0 + P; invocation (rslot, lane) owns row r0 + rslot, columns lane, lane + L, ...
  const body: string[] = [
    `let wgi = ${FLAT_WG};`,
    `if (wgi >= ${rowWorkgroups(spec.shape)}u) { return; }`,
    `let lane = lidx % ${L}u; let rslot = lidx / ${L}u;`,
    `let row_end = min(wgi * RPW + RPW, ROWS);`,
    ...(writer?.prologue() ?? []),
    ...(spec.init?.(K * V) ?? []),
    ...spec.rowInputs.map((n) => `var ${n}_r: array<f32, ${K * V}>;`),
    `for (var r0 = wgi * RPW; r0 < row_end; r0 = r0 + ${P}u) {`,
    `  let row = r0 + rslot; let live = row < row_end;`,
    `  let base = min(row, ROWS - 1u) * W;`,
    ...each(spec.rowInputs.map((n) => `${n}_r[slot] = select(0.0, ${n}[base + min(col, W - 1u)], ok);`)).map((l) => `  ${l}`),
    ...spec.row(ctx).map((l) => `  ${l}`),
  ];
  if (writer && spec.value) {
    // V consecutive values per invocation form one stored word (V = 1 f32, 2 bf16, 4 FP8).
    const vals = Array.from({ length: V }, (_, u) => `vals[${u}]`);
    body.push(
      `  for (var k = 0u; k < ${K}u; k = k + 1u) {`,
      `    var vals: array<f32, ${V}>;`,
      `    for (var u = 0u; u < ${V}u; u = u + 1u) {`,
      `      let slot = k * ${V}u + u; let col = (k * ${L}u + lane) * ${V}u + u; let ok = live && col < W;`,
      `      vals[u] = select(0.0, ${spec.value(ctx)}, ok);`,
      `    }`,
      `    let c0 = (k * ${L}u + lane) * ${V}u;`,
      ...writer.store(vals, `(base + c0) / ${V}u`, "live && c0 < W").map((l) => `    ${l}`),
      `  }`,
    );
  }
  // After the loop every row slot takes part (live = true): `ok` is then just col < W.
  const after = spec.after ? [`{`, `  let live = true;`, ...spec.after(ctx).map((l) => `  ${l}`), `}`] : [];
  body.push(`}`, ...after, ...(writer?.epilogue() ?? []));
  return finish(b, wg, body, grid(rowWorkgroups(spec.shape)));
}

function gainExpr(g: Gain): string {
  if (g === "param") return "gain[min(col, W - 1u)]";
  return g === "none" ? "1.0" : fmtF32(g);
}

/** Row statistics shared by forward and backward: `xh_r[slot]` = x̂ = (x − mean)·rstd (mean = 0 for RMS). */
function normStats(cfg: NormConfig, c: RowCtx): string[] {
  const lines: string[] = [];
  if (cfg.kind === "layer") lines.push(...c.red("sum_x", "sum", "x_r[slot]"), `let mean = sum_x / f32(W);`);
  else lines.push(`let mean = 0.0;`);
  lines.push(
    ...c.each([`x_r[slot] = select(0.0, x_r[slot] - mean, ok);`]),
    ...c.red("ss", "sum", "x_r[slot] * x_r[slot]"),
    `let rstd = 1.0 / sqrt(ss / f32(W) + ${fmtF32(cfg.eps)});`,
    ...c.each([`x_r[slot] = x_r[slot] * rstd;`]), // x_r now holds x̂
  );
  return lines;
}

function declareParams(cfg: NormConfig, b: WgslBuilder): void {
  check(cfg.kind === "layer" || !cfg.bias, `${cfg.name}: RMSNorm has no bias`);
  if (cfg.gain === "param") b.bind("gain", "f32");
  if (cfg.bias) b.bind("bias", "f32");
}

/** y = x̂·gain (+ bias). Bindings: x, [gain], [bias], y, [scales], [amax]. */
export function norm(cfg: NormConfig): KernelSource {
  return rowKernel({
    shape: cfg,
    rowInputs: ["x"],
    declare: (b) => declareParams(cfg, b),
    out: { name: "y", cast: cfg.out ?? F32_OUT },
    row: (c) => normStats(cfg, c),
    value: () => `x_r[slot] * ${gainExpr(cfg.gain)}${cfg.bias ? " + bias[min(col, W - 1u)]" : ""}`,
  });
}

/**
 * dx = rstd·(g⊙dy − mean(g⊙dy) − x̂·mean(g⊙dy⊙x̂)) (the mean(g⊙dy) term for LayerNorm only);
 * dgain/dbias partial column sums. Bindings: x, dy, [gain], [dgain], [dbias], [dx], [scales], [amax].
 */
export function normGrad(cfg: NormGradConfig): KernelSource {
  const { wrt } = cfg;
  check(wrt.x || wrt.gain || wrt.bias, `${cfg.name}: nothing to differentiate`);
  check(!wrt.gain || cfg.gain === "param", `${cfg.name}: gradient wrt a gain that is not a parameter`);
  check(!wrt.bias || !!cfg.bias, `${cfg.name}: gradient wrt a missing bias`);
  const acc = (n: string, slots: number): string[] => [`var ${n}_acc: array<f32, ${slots}>;`];
  const g = gainExpr(cfg.gain);
  return rowKernel({
    shape: cfg,
    rowInputs: ["x", "dy"],
    declare: (b) => {
      if (wrt.x) declareParams({ ...cfg, bias: false }, b); // the gain only enters dx
      if (wrt.gain) b.bind("dgain", "f32", "read_write");
      if (wrt.bias) b.bind("dbias", "f32", "read_write");
    },
    out: wrt.x ? { name: "dx", cast: cfg.out ?? F32_OUT } : undefined,
    init: (n) => [...(wrt.gain ? acc("dgain", n) : []), ...(wrt.bias ? acc("dbias", n) : [])],
    row: (c) => [
      ...normStats(cfg, c),
      ...(wrt.gain ? c.each([`dgain_acc[slot] = dgain_acc[slot] + dy_r[slot] * x_r[slot];`]) : []),
      ...(wrt.bias ? c.each([`dbias_acc[slot] = dbias_acc[slot] + dy_r[slot];`]) : []),
      ...(wrt.x
        ? [
            ...(cfg.kind === "layer" ? c.red("m1s", "sum", `dy_r[slot] * ${g}`) : [`let m1s = 0.0;`]),
            ...c.red("m2s", "sum", `dy_r[slot] * ${g} * x_r[slot]`),
          ]
        : []),
    ],
    value: () => `rstd * (dy_r[slot] * ${g} - m1s / f32(W) - x_r[slot] * (m2s / f32(W)))`,
    after: (c) =>
      c.columnSums([...(wrt.gain ? [{ acc: "dgain_acc", out: "dgain" }] : []), ...(wrt.bias ? [{ acc: "dbias_acc", out: "dbias" }] : [])]),
  });
}

/** y = softmax(x) per row. Bindings: x, y, [scales], [amax]. */
export function softmax(cfg: RowShape & { out?: OutCast }): KernelSource {
  return rowKernel({
    shape: cfg,
    rowInputs: ["x"],
    declare: () => {},
    out: { name: "y", cast: cfg.out ?? F32_OUT },
    row: (c) => [...c.red("mx", "max", "x_r[slot]"), ...c.red("z", "sum", "exp(x_r[slot] - mx)"), `let inv = 1.0 / z;`],
    value: () => "exp(x_r[slot] - mx) * inv",
  });
}

const targetOf = `u32(clamp(targets[min(row, ROWS - 1u)], 0i, i32(W) - 1i))`;
const logSumExp = (c: RowCtx): string[] => [...c.red("mx", "max", "logits_r[slot]"), ...c.red("z", "sum", "exp(logits_r[slot] - mx)")];

/**
 * Cross-entropy of logits [rows, vocab] against i32 targets: each workgroup writes the sum over its
 * rows of (logsumexp − logit[target]) / rows, so one workgroup (rowsPerWorkgroup ≥ rows) writes the
 * mean loss and several write partials for reduce.ts to add. Bindings: logits, targets, loss.
 */
export function crossEntropy(cfg: RowShape): KernelSource {
  return rowKernel({
    shape: cfg,
    rowInputs: ["logits"],
    declare: (b) => {
      b.bind("targets", "i32");
      b.bind("loss", "f32", "read_write");
    },
    init: () => [`var total = 0.0;`],
    row: (c) => [...logSumExp(c), `total = total + select(0.0, log(z) + mx - logits[base + ${targetOf}], live);`],
    after: (c) => [...c.acrossRows("sum_loss", "total"), `if (lidx == 0u) { loss[wgi] = sum_loss * ${fmtF32(1 / cfg.rows)}; }`],
  });
}

/** dlogits = (softmax − onehot(target))·dloss[0]/rows. Bindings: logits, targets, dloss, dlogits, [scales], [amax]. */
export function crossEntropyGrad(cfg: RowShape & { out?: OutCast }): KernelSource {
  return rowKernel({
    shape: cfg,
    rowInputs: ["logits"],
    declare: (b) => {
      b.bind("targets", "i32");
      b.bind("dloss", "f32");
    },
    out: { name: "dlogits", cast: cfg.out ?? F32_OUT },
    row: (c) => [...logSumExp(c), `let kce = dloss[0] * ${fmtF32(1 / cfg.rows)} / z; let tgt = ${targetOf};`],
    value: () => `(exp(logits_r[slot] - mx) - select(0.0, z, col == tgt)) * kce`,
  });
}

/** y[row] = max |x[row, :cols]| (`cols` defaults to the whole row: the IR's row_absmax attr). Bindings: x, y. */
export function rowAbsmax(cfg: RowShape & { cols?: number }): KernelSource {
  const v = cfg.cols !== undefined && cfg.cols < cfg.width ? `select(0.0, abs(x_r[slot]), col < ${cfg.cols}u)` : "abs(x_r[slot])";
  return rowKernel({
    shape: cfg,
    rowInputs: ["x"],
    declare: (b) => {
      b.bind("y", "f32", "read_write");
    },
    row: (c) => [...c.red("m", "max", v), `if (lane == 0u && live) { y[row] = m; }`],
  });
}
