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

// erf(x), f32, max |error| ≤ 1e-7 (9.6e-8 measured: f32 arithmetic emulated with Math.fround over
// 3e6 points of [0, 6] against the f64 series erf(x) = 2x/√π·e^(−x²)·Σ (2x²)ⁿ/(1·3·…·(2n+1))).
// Abramowitz–Stegun 7.1.26 (1.5e-7) was not enough. Coefficients are our own least-squares fits on
// 4000 Chebyshev nodes, rounded to f32:
//   |x| < 0.75:      erf(x) = x·c₀ + x·t·P(t), t = x²   (c₀ apart so its product rounds once)
//   0.75 ≤ |x| < 4:  erf(x) = 1 − e^(−x²)·Q(v), v = (|x| − 2.375)/1.625, Q ≈ erfc(x)·e^(x²)
//   |x| ≥ 4:         ±1 (erfc(4) = 1.5e-8 is below half an f32 ulp of 1)
const ERF_SMALL = [
  1.128379225730896, -0.37612637877464294, 0.11283775418996811, -0.026864543557167053,
  0.005216008983552456, -0.0008344607776962221, 0.00009397533722221851,
];
const ERFC_SCALED = [
  0.2205056995153427, -0.13158775866031647, 0.07442593574523926, -0.0401594415307045,
  0.02077612280845642, -0.010329863987863064, 0.004966120235621929, -0.0023713174741715193,
  0.0010766997002065182, -0.0003770125040318817, 0.00015825701120775193, -0.00014369191194418818,
  0.00005972735016257502,
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
  ew_erf: [
    "fn ew_erf(x: f32) -> f32 {",
    "  let a = min(abs(x), 4.0);",
    "  var r: f32;",
    "  if (a < 0.75) {",
    "    let t = a * a;",
    `    r = fma(a, ${fmtF32(ERF_SMALL[0])}, a * t * ${horner(ERF_SMALL.slice(1), "t")});`,
    "  } else {",
    `    let v = (a - 2.375) * ${fmtF32(1 / 1.625)};`,
    `    r = 1.0 - exp(-(a * a)) * ${horner(ERFC_SCALED, "v")};`,
    "  }",
    "  return select(r, -r, x < 0.0);",
    "}",
  ].join("\n"),
  // Exact GELU: x·Φ(x) = ½x(1 + erf(x/√2)).
  ew_gelu: `fn ew_gelu(x: f32) -> f32 {\n  return 0.5 * x * (1.0 + ew_erf(x * ${SQRT1_2}));\n}`,
  // d/dx x·Φ(x) = Φ(x) + x·φ(x).
  ew_gelu_grad: [
    "fn ew_gelu_grad(x: f32, dy: f32) -> f32 {",
    `  let cdf = 0.5 * (1.0 + ew_erf(x * ${SQRT1_2}));`,
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
  gelu: { arity: 1, render: call("ew_gelu"), helpers: ["ew_erf", "ew_gelu"] },
  silu: { arity: 1, render: call("ew_silu"), helpers: ["ew_silu"] },
  // tanh(±10) rounds to ±1 in f32; the clamp keeps drivers whose tanh goes through exp from
  // returning inf/inf = NaN for large |x|.
  tanh: { arity: 1, render: (a) => `tanh(clamp(${a[0]}, -10.0, 10.0))`, helpers: [] },
  relu: { arity: 1, render: (a) => `max(${a[0]}, 0.0)`, helpers: [] },
  neg: { arity: 1, render: (a) => `(-${a[0]})`, helpers: [] },
  exp: { arity: 1, render: (a) => `exp(${a[0]})`, helpers: [] },
  square: { arity: 1, render: call("ew_square"), helpers: ["ew_square"] },
  gelu_grad: { arity: 2, render: call("ew_gelu_grad"), helpers: ["ew_erf", "ew_gelu_grad"] },
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
