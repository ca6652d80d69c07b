// Subgroup-matrix WGSL rewritten into per-invocation emulation (attention-sgmm.ts kernels), so that
// adapters without subgroup matrices (lavapipe) can check them, and a GPU can compare both.
/** The source without the subgroup-matrix enable and its uniformity diagnostic (what emulation replaces). */
function withoutSgmmEnable(wgsl: string): string {
  return wgsl.replace(/^enable chromium_experimental_subgroup_matrix;\n/m, "").replace(/^\s*@diagnostic\(off, chromium\.subgroup_matrix_uniformity\)\n/m, "");
}

/** The argument list of the call whose "(" is at `open`, split at top-level commas, and the index past ")". */
function callArgs(text: string, open: number): [string[], number] {
  const parts: string[] = [];
  let depth = 0;
  let start = open + 1;
  for (let i = open; i < text.length; i++) {
    const ch = text[i];
    if (ch === "(") depth++;
    else if (ch === ")" && --depth === 0) return [[...parts, text.slice(start, i).trim()], i + 1];
    else if (ch === "," && depth === 1) parts.push(text.slice(start, i).trim()), (start = i + 1);
  }
  throw new Error("emulation: unbalanced call");
}

/**
 * subgroupMatrixLoad/Store calls: groups op, kind (left|right, loads), the type's two sizes, major.
 * left<T, K, M> is M×K, right<T, N, K> is K×N, result<T, N, M> is M×N. A fresh (global) RegExp.
 */
const sgmmCallRe = (): RegExp => /subgroupMatrix(Load|Store)<(?:subgroup_matrix_(left|right)<\w+, (\d+), (\d+)>, )?(row_major|col_major)>\(/g;

/** One subgroupMatrixLoad/Store call: `arr` the workgroup array (without &), `args` the rest. */
export interface SgmmCall {
  op: "Load" | "Store";
  kind?: "left" | "right";
  major: "row_major" | "col_major";
  arr: string;
  args: string[];
}

/**
 * Every subgroupMatrixLoad/Store call of `wgsl` (enable and uniformity diagnostic removed) replaced
 * by `replace(call)`, and the MMA shape its fragment types name (M = 0 when it has none). Stores
 * must be row-major results.
 */
export function rewriteSgmmCalls(wgsl: string, replace: (c: SgmmCall) => string): { out: string; mma: { M: number; N: number; K: number } } {
  const out = withoutSgmmEnable(wgsl);
  const mma = { M: 0, N: 0, K: 0 };
  const callRe = sgmmCallRe();
  let result = "";
  let last = 0;
  for (let m = callRe.exec(out); m; m = callRe.exec(out)) {
    const [whole, op, kind, c1, c2, major] = m;
    const [a, end] = callArgs(out, m.index + whole.length - 1);
    result += out.slice(last, m.index);
    if (op === "Load") {
      if (kind === "left") Object.assign(mma, { M: Number(c2), K: Number(c1) });
      else Object.assign(mma, { N: Number(c1), K: Number(c2) });
    } else if (major !== "row_major") throw new Error("emulation: only row_major result stores");
    result += replace({ op: op as SgmmCall["op"], kind: kind as SgmmCall["kind"], major: major as SgmmCall["major"], arr: a[0].replace(/^&/, ""), args: a.slice(1) });
    last = end;
  }
  return { out: result + out.slice(last), mma };
}

/**
 * Rewrites a subgroup-matrix kernel so that an adapter without subgroup matrices (lavapipe) runs it,
 * every invocation of a subgroup doing the whole operation redundantly: a fragment load copies the
 * M×K (left) or K×N (right) elements from where they lie in workgroup memory into a function array
 * (f32; the values are f16), a result is a row-major f32 array, multiply-accumulate is the triple
 * loop, and a store writes the whole result (every invocation writes the same values). Unlike
 * gemm.test.ts's emulation (operands only in sh_a/sh_b) fragments may come from any workgroup
 * array. Loop bounds go through arrayLength so lavapipe's compiler does not unroll them (slow).
 */
export function emulateSubgroupMatrices(wgsl: string): string {
  const loads = new Set<string>();
  const stores = new Set<string>();
  const rewritten = rewriteSgmmCalls(wgsl, (c) => {
    if (c.op === "Load") {
      loads.add(`${c.kind}:${c.arr}`);
      return `sgm_${c.kind}_${c.arr}(${c.args[0]}, ${c.args[1]}, ${c.major === "col_major" ? 1 : 0}u)`;
    }
    stores.add(c.arr);
    return `sgm_store_${c.arr}(${c.args[0]}, &${c.args[1]}, ${c.args[2]})`;
  });
  let out = rewritten.out;
  const mma = rewritten.mma;
  const { M, N, K } = mma;
  if (!M) return out;
  out = out
    .replace(/subgroup_matrix_(?:left|right|result)<\w+, (\d+), (\d+)>/g, (_, c, r) => `array<f32, ${Number(c) * Number(r)}>`)
    .replace(/(\w+) = subgroupMatrixMultiplyAccumulate\((\w+), (\w+), \1\);/g, "sgm_mma(&$1, $2, $3);");
  if (out.includes("subgroupMatrix") || out.includes("subgroup_matrix")) throw new Error("emulation: a subgroup-matrix construct was not rewritten");
  const n = (x: number) => `sgm_n(${x}u)`;
  const helpers = [
    "fn sgm_n(n: u32) -> u32 { return select(n, 0u, arrayLength(&lse) == 0u); }",
    `fn sgm_mma(acc: ptr<function, array<f32, ${M * N}>>, l: array<f32, ${M * K}>, r: array<f32, ${K * N}>) {
  for (var i = 0u; i < ${n(M)}; i++) {
    for (var j = 0u; j < ${n(N)}; j++) {
      var s = 0.0;
      for (var k = 0u; k < ${n(K)}; k++) { s += l[i * ${K}u + k] * r[k * ${N}u + j]; }
      (*acc)[i * ${N}u + j] += s;
    }
  }
}`,
    ...[...loads].map((key) => {
      const [kind, arr] = key.split(":");
      const [rows, cols] = kind === "left" ? [M, K] : [K, N];
      return `fn sgm_${kind}_${arr}(off: u32, stride: u32, col: u32) -> array<f32, ${rows * cols}> {
  var f: array<f32, ${rows * cols}>;
  for (var r = 0u; r < ${n(rows)}; r++) {
    for (var c = 0u; c < ${n(cols)}; c++) { f[r * ${cols}u + c] = f32(${arr}[off + select(r * stride + c, c * stride + r, col == 1u)]); }
  }
  return f;
}`;
    }),
    ...[...stores].map(
      (arr) => `fn sgm_store_${arr}(off: u32, m: ptr<function, array<f32, ${M * N}>>, stride: u32) {
  for (var i = 0u; i < ${n(M)}; i++) { for (var j = 0u; j < ${n(N)}; j++) { ${arr}[off + i * stride + j] = (*m)[i * ${N}u + j]; } }
}`,
    ),
  ];
  return `${out}\n${helpers.join("\n\n")}\n`;
}

