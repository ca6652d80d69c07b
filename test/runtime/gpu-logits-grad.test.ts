// The logits' gradient written as bf16 by the cross-entropy gradient kernel (compiler/fuse.ts fuses
// its bf16 cast, read only by the LM head's GEMMs, into it): no f32 gradient is stored, and the
// codes are the ones the separate cast kernel made from the f32 gradient (the CPU reference rounds
// that cast the same way; gpu-executor.test.ts checks the steps against it).
import { describe, expect, it } from "vitest";
import { crossEntropyGrad } from "../../compiler/kernels/rowwise.js";
import { elementwise } from "../../compiler/kernels/elementwise.js";
import type { PrecisionMode } from "../../compiler/model.js";
import { compile } from "../../compiler/pipeline.js";
import { type PlanOptions, planTrainStep } from "../../runtime/gpu-plan.js";
import { withGpu } from "../helpers/gpu.js";
import { rng, run } from "../kernels/harness.js";

const LAVAPIPE: PlanOptions = { maxSharedBytes: 16384, maxBindingBytes: 1 << 27, offsetAlign: 256 };

describe("the logits' gradient in bf16", () => {
  it("is written as bf16 by the cross-entropy gradient kernel; no f32 copy, no cast kernel", () => {
    for (const mode of ["bf16", "fp8", "fp8dpa"] as PrecisionMode[]) {
      const g = compile(new URL("../../examples/fog-flash-tiny.fog", import.meta.url).pathname, { batch: 2, seqLen: 16, precision: mode }).program!.train;
      const plan = planTrainStep(g, LAVAPIPE, { probes: false });
      const ce = g.nodes.find((n) => n.op === "cross_entropy_grad")!;
      const cast = g.nodes.find((n) => n.op === "cast" && n.inputs[0] === ce.id)!;
      expect(plan.fused!.storage[cast.id], mode).toBe("bf16");
      expect(plan.buffers.some((b) => b.label === ce.name), `${mode}: an f32 '${ce.name}'`).toBe(false);
      const k = plan.kernels.find((x) => x.label === `${cast.name} (cross_entropy grad)`)!;
      expect(k, mode).toBeDefined();
      expect(k.source.wgsl).toMatch(/var<storage, read_write> dlogits: array<u32>/);
      const out = plan.buffers[k.bindings[k.source.bindings.findIndex((b) => b.name === "dlogits")].buffer];
      expect(out.bytes).toBe(Math.ceil((ce.shape[0] * ce.shape[1]) / 2) * 4);
      expect(plan.kernels.some((x) => x.label.startsWith(`${cast.name} (cast`)), mode).toBe(false);
      // Its readers are the head's two GEMMs (dgrad; wgrad, tied: fused with the embedding's gradient).
      const users = plan.kernels.filter((x) => x.bindings.some((v) => v.buffer === out.id));
      expect(users.length, mode).toBe(3);
      for (const u of users.slice(1)) expect(u.label).toMatch(/\(gemm[^)]*\)$/);
    }
  });

  it("makes the codes the f32 gradient and the separate bf16 cast kernel made", () =>
    withGpu(async (gpu) => {
      const rows = 6;
      const V = 256;
      const logits = rng(11)(rows * V, -6, 6);
      const targets = Int32Array.from({ length: rows }, (_, r) => (r * 37) % V);
      const dloss = Float32Array.of(1.3);
      const f32 = await run(gpu, crossEntropyGrad({ name: "ceg", rows, width: V, wg: 64 }), { logits, targets, dloss, dlogits: rows * V * 4 });
      const cast = await run(gpu, elementwise({ name: "cast", rows: 1, cols: rows * V, inputs: ["none"], expr: { in: 0 }, out: { dtype: "bf16" } }), { in0: new Float32Array(f32.dlogits), y: rows * V * 2 });
      const fused = await run(gpu, crossEntropyGrad({ name: "ceg", rows, width: V, wg: 64, out: { dtype: "bf16" } }), { logits, targets, dloss, dlogits: rows * V * 2 });
      expect(Array.from(new Uint32Array(fused.dlogits))).toEqual(Array.from(new Uint32Array(cast.y)));
    }));
});
