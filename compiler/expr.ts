// The elementwise expression table: one WGSL rendering per elementwise op (f32), shared by every
// kernel generator (GEMM epilogues, elementwise chains, row-wise and attention kernels), so an op's
// numerics are defined in exactly one place. Ops that use an argument twice render as helper calls.
import { fmtF32 } from "./wgsl.js";

/** Elementwise ops transformer training needs, forward and the derivatives backward kernels use. */
export type EwOp =
  | "add"
  | "sub"
  | "mul"
  | "div"
  | "scale"
  | "gelu"
  | "silu"
  | "tanh"
  | "relu"
  | "neg"
  | "exp"
  | "square"
  // Derivatives: (x, dy) → dy·f'(x) for gelu/silu; tanh's is given its output: (y, dy) → dy·(1−y²).
  | "gelu_grad"
  | "silu_grad"
  | "tanh_grad";

export interface EwAttrs {
  /** `scale`: the constant factor. */
  factor?: number;
}

export interface WgslHelper {
  name: string;
  source: string;
}

interface EwRule {
  arity: number;
  render: (a: string[], attrs: EwAttrs) => string;
  /** Helper functions the rendering calls, in dependency order. */
  helpers: readonly HelperName[];
}

// erf and erfc in f32. Abramowitz–Stegun 7.1.26 (1.5e-7) is not enough and, like any 1 + erf(x)
// formula, loses all relative accuracy in GELU's negative tail; so GELU goes through erfc, which
// is accurate relative to its own value. Measured with f32 arithmetic emulated (Math.fround, exp
// correctly rounded) over 3e6 points against f64 series/continued-fraction references:
//   erf: max |error| 1.2e-7 on [0, 9];  erfc: max relative error 7.1e-7 on [0, 4], 4e-6 out to
//   x = 9.2 (there the f32 rounding of x² inside exp dominates); GELU: 3.8e-7 absolute on [−13, 13].
// Coefficients are our own least-squares fits on 4000 Chebyshev nodes, rounded to f32:
//   |x| < 0.75:     erf(x)  = x·c₀ + x·t·P(t), t = x²   (c₀ apart so its product rounds once)
//   0.75 ≤ x < 4:   erfc(x) = e^(−x²)·Q(v), v = (x − 2.375)/1.625      (Q ≈ erfc·e^(x²))
//   x ≥ 4:          erfc(x) = e^(−x²)·T(w)/x, w = (1/x − 0.175)/0.075  (T ≈ x·erfc·e^(x²)); past
//                   x ≈ 10 e^(−x²) underflows and erfc is 0, as in f32 it should be.
//   erfc(−x) = 2 − erfc(x); erf (1 − erfc for |x| ≥ 0.75) is measured but only erfc is emitted.
const ERF_SMALL = [
  1.128379225730896, -0.37612637877464294, 0.11283775418996811, -0.026864543557167053,
  0.005216008983552456, -0.0008344607776962221, 0.00009397533722221851,
];
const ERFC_MID = [
  0.2205056995153427, -0.13158775866031647, 0.07442593574523926, -0.0401594415307045,
  0.02077612280845642, -0.010329863987863064, 0.004966120235621929, -0.0023713174741715193,
  0.0010766997002065182, -0.0003770125040318817, 0.00015825701120775193, -0.00014369191194418818,
  0.00005972735016257502,
];
const ERFC_TAIL = [
  0.5559197664260864, -0.0067932261154055595, -0.0012193771544843912, 0.00008822176459943876,
  0.000003428626996537787, -0.000001044030341290636, 4.920854479451009e-8,
];

/** Horner's rule with fma, highest degree first: c[n]·u + c[n−1] … + c[0]. */
function horner(c: readonly number[], u: string): string {
  let p = fmtF32(c[c.length - 1]);
  for (let i = c.length - 2; i >= 0; i--) p = `fma(${p}, ${u}, ${fmtF32(c[i])})`;
  return p;
}

const SQRT1_2 = fmtF32(Math.SQRT1_2);
const INV_SQRT_2PI = fmtF32(1 / Math.sqrt(2 * Math.PI));

const HELPERS = {
  // erf(a) for 0 ≤ a < 0.75.
  ew_erf_small: [
    "fn ew_erf_small(a: f32) -> f32 {",
    "  let t = a * a;",
    `  return fma(a, ${fmtF32(ERF_SMALL[0])}, a * t * ${horner(ERF_SMALL.slice(1), "t")});`,
    "}",
  ].join("\n"),
  ew_erfc: [
    "fn ew_erfc(x: f32) -> f32 {",
    "  let a = abs(x);",
    "  var r: f32;",
    "  if (a < 0.75) {",
    "    r = 1.0 - ew_erf_small(a);",
    "  } else if (a < 4.0) {",
    `    r = exp(-(a * a)) * ${horner(ERFC_MID, `((a - 2.375) * ${fmtF32(1 / 1.625)})`)};`,
    "  } else {",
    `    r = exp(-(a * a)) * ${horner(ERFC_TAIL, `((1.0 / a - 0.175) * ${fmtF32(1 / 0.075)})`)} / a;`,
    "  }",
    "  return select(r, 2.0 - r, x < 0.0);",
    "}",
  ].join("\n"),
  // Exact GELU: x·Φ(x), Φ(x) = ½·erfc(−x/√2) (relative accuracy kept for x ≪ 0).
  ew_gelu: `fn ew_gelu(x: f32) -> f32 {\n  return x * 0.5 * ew_erfc(-x * ${SQRT1_2});\n}`,
  // d/dx x·Φ(x) = Φ(x) + x·φ(x).
  ew_gelu_grad: [
    "fn ew_gelu_grad(x: f32, dy: f32) -> f32 {",
    `  let cdf = 0.5 * ew_erfc(-x * ${SQRT1_2});`,
    `  return dy * (cdf + x * ${INV_SQRT_2PI} * exp(-0.5 * x * x));`,
    "}",
  ].join("\n"),
  // x·σ(x); for x ≪ 0, exp(−x) = inf and x/inf = −0, never NaN.
  ew_silu: "fn ew_silu(x: f32) -> f32 {\n  return x / (1.0 + exp(-x));\n}",
  ew_silu_grad: [
    "fn ew_silu_grad(x: f32, dy: f32) -> f32 {",
    "  let s = 1.0 / (1.0 + exp(-x));",
    "  return dy * s * (1.0 + x * (1.0 - s));",
    "}",
  ].join("\n"),
  ew_square: "fn ew_square(x: f32) -> f32 {\n  return x * x;\n}",
  ew_tanh_grad: "fn ew_tanh_grad(y: f32, dy: f32) -> f32 {\n  return dy * (1.0 - y * y);\n}",
} satisfies Record<string, string>;
type HelperName = keyof typeof HELPERS;

const bin = (o: string) => (a: string[]) => `(${a[0]} ${o} ${a[1]})`;
const call = (f: HelperName) => (a: string[]) => `${f}(${a.join(", ")})`;

const RULES = {
  add: { arity: 2, render: bin("+"), helpers: [] },
  sub: { arity: 2, render: bin("-"), helpers: [] },
  mul: { arity: 2, render: bin("*"), helpers: [] },
  div: { arity: 2, render: bin("/"), helpers: [] },
  scale: {
    arity: 1,
    render: (a, attrs) => {
      if (attrs.factor === undefined) throw new Error("ewExpr: 'scale' needs attrs.factor");
      return `(${a[0]} * ${fmtF32(attrs.factor)})`;
    },
    helpers: [],
  },
  gelu: { arity: 1, render: call("ew_gelu"), helpers: ["ew_erf_small", "ew_erfc", "ew_gelu"] },
  silu: { arity: 1, render: call("ew_silu"), helpers: ["ew_silu"] },
  // tanh(±10) rounds to ±1 in f32; the clamp keeps drivers whose tanh goes through exp from
  // returning inf/inf = NaN for large |x|.
  tanh: { arity: 1, render: (a) => `tanh(clamp(${a[0]}, -10.0, 10.0))`, helpers: [] },
  relu: { arity: 1, render: (a) => `max(${a[0]}, 0.0)`, helpers: [] },
  neg: { arity: 1, render: (a) => `(-${a[0]})`, helpers: [] },
  exp: { arity: 1, render: (a) => `exp(${a[0]})`, helpers: [] },
  square: { arity: 1, render: call("ew_square"), helpers: ["ew_square"] },
  gelu_grad: { arity: 2, render: call("ew_gelu_grad"), helpers: ["ew_erf_small", "ew_erfc", "ew_gelu_grad"] },
  silu_grad: { arity: 2, render: call("ew_silu_grad"), helpers: ["ew_silu_grad"] },
  tanh_grad: { arity: 2, render: call("ew_tanh_grad"), helpers: ["ew_tanh_grad"] },
} satisfies Record<EwOp, EwRule>;

/** All op names, in table order. */
export const EW_OPS = Object.keys(RULES) as EwOp[];

/** Number of operands `op` takes. */
export function ewArity(op: EwOp): number {
  return RULES[op].arity;
}

/**
 * The WGSL f32 expression for `op` applied to the operand expressions `args`. Each operand appears
 * once in the result (ops that need a value twice call a helper), so operands may be arbitrary
 * expressions. Add the functions from `ewHelpers(op)` to the module.
 */
export function ewExpr(op: EwOp, args: string[], attrs: EwAttrs = {}): string {
  const rule: EwRule = RULES[op];
  if (args.length !== rule.arity) throw new Error(`ewExpr: '${op}' takes ${rule.arity} operand(s), got ${args.length}`);
  return rule.render(args, attrs);
}

/** Helper functions `ewExpr(op, …)` calls, dependencies first (for `WgslBuilder.helper`). */
export function ewHelpers(op: EwOp): WgslHelper[] {
  const rule: EwRule = RULES[op];
  return rule.helpers.map((name) => ({ name, source: HELPERS[name] }));
}
