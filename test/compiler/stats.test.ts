// Parameter counts from the IR against closed-form formulas and the sizes papers.md §6 gives.
import { describe, expect, it } from "vitest";
import { compile } from "../../compiler/pipeline.js";

function compiled(file: string) {
  const r = compile(file, { batch: 1, seqLen: 16 });
  expect(r.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
  return r.program!;
}

/** Llama-style decoder: tied embedding, GQA attention, SwiGLU, two RMSNorms a layer, final norm. */
function llamaParams(V: number, D: number, L: number, H: number, Hkv: number, Dh: number, F: number): number {
  const attention = D * H * Dh + 2 * D * Hkv * Dh + H * Dh * D;
  const mlp = 3 * D * F;
  return V * D + L * (attention + mlp + 2 * D) + D;
}

describe("parameter count", () => {
  it("Llama3 390M matches the closed form and papers.md (0.386 B)", () => {
    const p = compiled("examples/llama3.fog");
    expect(p.stats.params).toBe(llamaParams(131072, 1024, 16, 8, 4, 128, 4096));
    expect(Math.abs(p.stats.params / 0.386e9 - 1)).toBeLessThan(0.02);
  });

  it("Llama3 tiny matches the closed form", () => {
    const p = compiled("examples/llama3-tiny.fog");
    expect(p.stats.params).toBe(llamaParams(256, 96, 3, 4, 2, 24, 256));
  });

  it.each(["fog-max", "fog-opt", "fog-flash", "olmo2", "op", "llama3-smooth-swiglu"])("%s 390M is within 2%% of 0.386 B", (name) => {
    const p = compiled(`examples/${name}.fog`);
    expect(Math.abs(p.stats.params / 0.386e9 - 1)).toBeLessThan(0.02);
  });

  it("tiny examples have a few hundred thousand parameters", () => {
    for (const name of ["fog-max", "fog-opt", "fog-flash", "olmo2", "op", "llama3", "llama3-smooth-swiglu"]) {
      const p = compiled(`examples/${name}-tiny.fog`);
      expect(p.stats.params).toBeGreaterThan(100_000);
      expect(p.stats.params).toBeLessThan(1_000_000);
    }
  });
});

describe("FLOPs per token", () => {
  it("forward FLOPs are 2·(non-embedding GEMM params + head) plus causal attention", () => {
    const T = 16;
    const p = compiled("examples/llama3-tiny.fog");
    const [V, D, L, H, Dh] = [256, 96, 3, 4, 24];
    const gemmParams = p.stats.params - V * D - L * 2 * D - D; // block matrices only
    const expected = 2 * gemmParams + 2 * V * D + L * 4 * H * Dh * ((T + 1) / 2);
    expect(p.stats.forwardFlopsPerToken).toBeCloseTo(expected, 6);
    expect(p.stats.trainFlopsPerToken).toBeCloseTo(3 * expected, 6);
  });
});
