// Parameter initialisation from a graph's `param` nodes (papers.md §4, §5.7): normal(std) by Box–Muller
// on the seeded PRNG, constants, and softplus⁻¹ for xIELU's ρ. Each parameter draws from its own
// stream derived from (seed, name), so a value depends only on the seed and the parameter's name.
import type { Graph, Init } from "../compiler/ir.js";
import { numel, paramNodes } from "../compiler/ir.js";
import { hashString, Prng } from "./prng.js";

/** softplus⁻¹(v) = log(exp(v) − 1), computed stably for large v (v + log(1 − e^−v)). */
export function softplusInv(v: number): number {
  if (!(v > 0)) throw new Error(`softplus_inv needs a positive value, got ${v}`);
  return v > 20 ? v + Math.log1p(-Math.exp(-v)) : Math.log(Math.expm1(v));
}

/** Fills a new f32 array of n values per `init`, normal draws from `prng`. */
export function initValues(init: Init, n: number, prng: Prng): Float32Array {
  const out = new Float32Array(n);
  switch (init.kind) {
    case "const":
      out.fill(init.value);
      break;
    case "softplus_inv":
      out.fill(softplusInv(init.value));
      break;
    case "normal":
      for (let i = 0; i < n; i += 2) {
        const [a, b] = prng.normalPair();
        out[i] = a * init.std;
        if (i + 1 < n) out[i + 1] = b * init.std;
      }
      break;
  }
  return out;
}

/** Initial values of every parameter of `g`, by name, in declaration order. Deterministic in `seed`. */
export function initParams(g: Graph, seed: number): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const p of paramNodes(g)) {
    if (out.has(p.name)) throw new Error(`initParams: two parameters are named "${p.name}"`);
    out.set(p.name, initValues(p.attrs.init, numel(p.shape), Prng.fromSeed(seed, hashString(p.name))));
  }
  return out;
}
