// Whole-model gradient check of every tiny example architecture: autodiff on the f64 reference
// against central finite differences of the loss, for sampled entries of every parameter tensor.
import { readdirSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { autodiff } from "../../compiler/autodiff.js";
import { paramNodes } from "../../compiler/ir.js";
import { compile } from "../../compiler/pipeline.js";
import { initParams } from "../../runtime/init.js";
import { outputValue, runReference } from "../../runtime/reference.js";

const tiny = readdirSync("examples").filter((f) => f.endsWith("-tiny.fog"));

describe("whole-model gradients (f64 reference vs finite differences)", () => {
  it.each(tiny)("%s", (file) => {
    // The math of the model, without the recipe's casts: rounding would swamp a finite difference.
    const r = compile(`examples/${file}`, { batch: 2, seqLen: 5 });
    const fwd = r.program!.forward;
    const g = autodiff(fwd); // the forward's nodes keep their ids, so one params map feeds both
    const init = initParams(g, 7);
    const params = new Map(paramNodes(g).map((p) => [p.id, Float64Array.from(init.get(p.name)!)]));
    const tokens = Int32Array.from({ length: 10 }, (_, i) => (i * 37 + 11) % 256);
    const targets = Int32Array.from({ length: 10 }, (_, i) => (i * 53 + 5) % 256);
    const loss = (): number => outputValue(fwd, runReference(fwd, { params, tokens, targets }), "loss")[0];
    const values = runReference(g, { params, tokens, targets });
    let checked = 0;
    for (const p of paramNodes(g)) {
      const grad = outputValue(g, values, `grad:${p.name}`);
      const x = params.get(p.id)!;
      // The largest-gradient entry and one fixed other entry of each tensor.
      let big = 0;
      for (let i = 1; i < grad.length; i++) if (Math.abs(grad[i]) > Math.abs(grad[big])) big = i;
      for (const i of new Set([big, Math.floor(grad.length / 3)])) {
        const h = 1e-5 * Math.max(1, Math.abs(x[i]));
        const x0 = x[i];
        x[i] = x0 + h;
        const up = loss();
        x[i] = x0 - h;
        const down = loss();
        x[i] = x0;
        const fd = (up - down) / (2 * h);
        // Central differences in f64: truncation O(h²·f''') and rounding ~1e-16/h ≈ 1e-11 absolute.
        expect(Math.abs(fd - grad[i]), `${file} ${p.name}[${i}]: fd ${fd}, autodiff ${grad[i]}`).toBeLessThan(1e-6 + 1e-4 * Math.abs(fd));
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(paramNodes(g).length);
  });
});
