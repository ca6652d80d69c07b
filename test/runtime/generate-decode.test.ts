// Sampling with a KV cache (compileDecode + the decoders) against the no-cache full-window forward
// of the same prefix, the CPU reference being the oracle: every step's logits, for a model with
// each attention variant (GQA, RoPE with and without llama3 scaling, QK RMSNorm, tanh QK) in bf16,
// fp8 and fp8dpa modes with trained delayed scales, on the CPU and on WebGPU (lavapipe).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { autodiff } from "../../compiler/autodiff.js";
import { GraphBuilder } from "../../compiler/graph-builder.js";
import type { Graph } from "../../compiler/ir.js";
import type { PrecisionMode } from "../../compiler/model.js";
import { compile, compileDecode, type Program } from "../../compiler/pipeline.js";
import { CpuDecoder, CpuExecutor, type Decoder, type DecoderInit } from "../../runtime/cpu-executor.js";
import { type TrainState, zeroMoments } from "../../runtime/executor.js";
import { decodeScales, generate, precisionLine } from "../../runtime/generate.js";
import { train } from "../../runtime/train.js";
import { initParams } from "../../runtime/init.js";
import { Prng } from "../../runtime/prng.js";
import { SKIP_GPU, getGpu } from "../helpers/gpu.js";

const SRC = `
precision delayed_dpa {
  mode        = fp8dpa
  activations = e4m3
  weights     = e4m3
  gradients   = e5m2
  scaling     = delayed(history = 4, margin = 0, amax = max)
}
precision current { mode = fp8  scaling = current(pow2 = false) }

model kv {
  vocab     = 256
  context   = 8
  width     = 32
  layers    = 2
  heads     = 4
  kv_heads  = 2
  head_dim  = 8
  mlp_width = 64

  head { tied = false  norm = rmsnorm(eps = 1e-5) }

  attention a_norm_rope {
    qk_norm = rmsnorm(eps = 1e-5, gain = frozen(1))
    rope    = rope
  }
  attention a_tanh_llama {
    qk_norm = tanh(alpha = 1, trainable = true)
    rope    = rope(base = 500000, scaling = llama3(factor = 8, low_freq = 1, high_freq = 4, original = 8192))
  }
  attention a_plain { qk_norm = none }
  mlp f { activation = swiglu }

  block {
    h = h + rmsnorm(a_norm_rope(h), eps = 1e-5)
    h = h + a_tanh_llama(rmsnorm(h, eps = 1e-5))
    h = h + a_plain(rmsnorm(h, eps = 1e-5))
    h = h + f(rmsnorm(h, eps = 1e-5))
  }

  precision = delayed_dpa

  train {
    tokenizer = bytes
    batch     = 1
    seq_len   = 8
    optimizer = adamw(lr = 1e-2, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1, clip = 1.0)
  }
}
model kv_current extends kv { precision = current }
`;

const CONTEXT = 8;
const hyper = (step: number) => ({ step, lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clip: 1 });

function program(model: string, precision?: PrecisionMode): Program {
  const r = compile("kv.fog", { model, readFile: () => SRC, ...(precision ? { precision } : {}) });
  if (!r.program) throw new Error(r.diagnostics.map((d) => d.message).join("\n"));
  return r.program;
}

interface Case {
  program: Program;
  exec: CpuExecutor;
  state: TrainState;
  init: DecoderInit;
}

/** A model after 3 training steps on the CPU executor (so FP8 slots hold trained delayed scales). */
async function trained(model: string, precision?: PrecisionMode): Promise<Case> {
  const p = program(model, precision);
  const exec = new CpuExecutor({ forward: p.forward, train: p.train, model: p.model });
  const params = initParams(p.forward, 11);
  await exec.loadState({ params, m: zeroMoments(params), v: zeroMoments(params), scales: [], step: 0 });
  const prng = Prng.fromSeed(5);
  for (let s = 1; s <= 3; s++) {
    const stream = Int32Array.from({ length: CONTEXT + 1 }, () => prng.nextInt(256));
    await exec.trainStep({ tokens: stream.subarray(0, CONTEXT), targets: stream.subarray(1), batch: 1, seqLen: CONTEXT }, hyper(s));
  }
  const state = await exec.readState();
  const graphs = new Map<number, Graph>();
  const graphFor = (rows: number): Graph => {
    if (!graphs.has(rows)) graphs.set(rows, compileDecode(p.model, { batch: 1, rows, context: CONTEXT }));
    return graphs.get(rows)!;
  };
  const scales = decodeScales(graphFor(1).scaleSlots, p.train.scaleSlots, state.scales);
  return { program: p, exec, state, init: { graphFor, params: state.params, scales } };
}

const IDS = [72, 101, 108, 108, 111, 44, 32, 119];
const PROMPT = 3;

/** The no-cache oracle: last-position logits of the full window holding ids[0..len). */
async function windowLogits(c: Case, len: number): Promise<Float32Array> {
  const window = new Int32Array(CONTEXT);
  window.set(IDS.slice(0, len));
  return c.exec.lastLogits(window, [len]);
}

/** Prefill of the prompt, then one token per call: the logits after each prefix length PROMPT…CONTEXT. */
async function cachedLogits(d: Decoder): Promise<Float32Array[]> {
  const out = [await d.step(Int32Array.from(IDS.slice(0, PROMPT)), 0)];
  for (let pos = PROMPT; pos < CONTEXT; pos++) out.push(await d.step(Int32Array.of(IDS[pos]), pos));
  return out;
}

function maxRelErr(a: Float32Array, b: Float32Array): number {
  let scale = 0;
  let err = 0;
  for (let i = 0; i < a.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]));
    err = Math.max(err, Math.abs(a[i] - b[i]));
  }
  return err / scale;
}

const MODES: PrecisionMode[] = ["bf16", "fp8", "fp8dpa"];
const cases = new Map<string, Promise<Case>>();
const caseFor = (mode: PrecisionMode): Promise<Case> => {
  if (!cases.has(mode)) cases.set(mode, trained("kv", mode));
  return cases.get(mode)!;
};
afterAll(async () => {
  for (const c of cases.values()) (await c).exec.dispose();
});

describe("decode graph", () => {
  it("lowers KV caches, cache writes, RoPE at the position and cached attention; is forward-only", () => {
    const p = program("kv", "fp8dpa");
    const g = compileDecode(p.model, { batch: 1, rows: 1, context: CONTEXT });
    const count = (op: string) => g.nodes.filter((n) => n.op === op).length;
    expect(count("kv_cache")).toBe(12);
    expect(count("kv_write")).toBe(12);
    expect(g.nodes.filter((n) => n.op === "attention" && n.attrs.cached?.context === CONTEXT)).toHaveLength(6);
    expect(g.nodes.filter((n) => n.op === "rope" && n.attrs.offset)).toHaveLength(8);
    const caches = ["a_norm_rope", "a_tanh_llama", "a_plain"].flatMap((a) => [0, 1].flatMap((l) => ["k", "v"].map((w) => `kv:b${l}.${a}.${w}_cache`)));
    expect(Object.keys(g.outputs).sort()).toEqual([...caches, "logits"].sort());
    expect(g.outputs.loss).toBeUndefined();
    // Every FP8 slot of the decode graph is a training slot of the same name (its state is restored by name).
    const trainNames = new Set(p.train.scaleSlots.map((s) => s.name));
    expect(g.scaleSlots.length).toBeGreaterThan(0);
    for (const s of g.scaleSlots) expect(trainNames.has(s.name)).toBe(true);
    expect(precisionLine(g)).toBe("FP8 E4M3 weights and activations, attention P in FP8 (FP8DPA), BF16 for the other GEMMs, scales from the checkpoint");
    // A loss on the decode graph's logits: differentiating it is refused, naming the decode op.
    const b = GraphBuilder.from(g);
    const targets = b.add("input", [], { input: "targets" }, "targets", [1]);
    b.outputs.loss = b.add("cross_entropy", [g.outputs.logits, targets], {}, "loss");
    expect(() => autodiff(b.build())).toThrow(/autodiff: (attention|kv_write) ".*" belongs to a decode graph \(KV cache\), which is forward-only/);
  });

  it("rejects a position past the cache with a clear message", async () => {
    const c = await caseFor("bf16");
    const d = new CpuDecoder(c.init);
    await expect(d.step(Int32Array.of(1, 2), CONTEXT - 1)).rejects.toThrow(/position 7 with 2 new rows does not fit a cache of 8 positions/);
  });
});

describe.each(MODES)("KV cache = full window (%s)", (mode) => {
  it("CPU: every step's logits equal the no-cache forward of the same prefix, bit for bit", async () => {
    const c = await caseFor(mode);
    const steps = await cachedLogits(new CpuDecoder(c.init));
    for (let i = 0; i < steps.length; i++) {
      const want = await windowLogits(c, PROMPT + i);
      // Same ops in the same order per row, delayed (frozen) scales: the reference gives identical f32 values.
      expect(maxRelErr(steps[i], want), `step ${i}`).toBe(0);
    }
  });

  it.skipIf(SKIP_GPU)("WebGPU: every step's logits match the CPU oracle", async () => {
    const c = await caseFor(mode);
    const { createGpuDecoder } = await import("../../runtime/gpu-executor.js");
    const d = await createGpuDecoder(c.init, { gpu: await getGpu() });
    try {
      const steps = await cachedLogits(d);
      for (let i = 0; i < steps.length; i++) {
        const want = await windowLogits(c, PROMPT + i);
        // f32 accumulation order differs; an FP8 cast can round the other way on a tie-near value.
        expect(maxRelErr(steps[i], want), `step ${i}`).toBeLessThan(mode === "bf16" ? 1e-4 : 2e-2);
      }
    } finally {
      d.dispose();
    }
  });
});

describe("current scaling", () => {
  it("casts with per-call scales (of the call's rows, not the window's): logits within 10% of the window's", async () => {
    const c = await trained("kv_current");
    try {
      const steps = await cachedLogits(new CpuDecoder(c.init));
      const g = c.init.graphFor(PROMPT);
      expect(g.scaleSlots.every((s) => s.scaling.kind === "current")).toBe(true);
      for (let i = 0; i < steps.length; i++) {
        const want = await windowLogits(c, PROMPT + i);
        expect(maxRelErr(steps[i], want), `step ${i}`).toBeLessThan(0.1);
      }
    } finally {
      c.exec.dispose();
    }
  });
});

describe("generate with the KV cache", () => {
  const dir = mkdtempSync(join(tmpdir(), "fogc-kv-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const checkpoint = (async () => {
    writeFileSync(join(dir, "kv.fog"), SRC.replace("tokenizer = bytes", 'tokenizer = bytes\n    data = "text.txt"'));
    writeFileSync(join(dir, "text.txt"), "the cat sat on the mat. the dog sat on the log. ".repeat(40));
    const r = await train({ file: join(dir, "kv.fog"), model: "kv", backend: "cpu", steps: 3, checkpoint: join(dir, "ck"), progress: null });
    return r.checkpoint!;
  })();

  it("greedy: the same tokens as the no-cache window, within the context; past it, re-prefills and goes on", async () => {
    const ck = await checkpoint;
    const opts = { checkpoint: ck, prompt: "the ", temperature: 0, backend: "cpu" as const };
    // 4 prompt bytes + 4 tokens = the context of 8: both paths see the same prefixes.
    const cached = await generate({ ...opts, tokens: 4 });
    const window = await generate({ ...opts, tokens: 4, cache: false });
    expect(cached.info).toMatchObject({ backend: "cpu", cache: true, context: CONTEXT });
    expect(window.info.cache).toBe(false);
    expect(cached.tokens).toEqual(window.tokens);
    // 20 tokens: the cache fills at 8 positions and is re-prefilled with the last 4 ids twice over.
    const long = await generate({ ...opts, tokens: 20 });
    expect(long.tokens.length).toBe(20);
    expect(long.tokens.slice(0, 4)).toEqual(cached.tokens);
    // Sampled (top-k) runs are seeded: the same seed gives the same text.
    const a = await generate({ ...opts, temperature: 0.8, topK: 5, seed: 3, tokens: 12 });
    const b = await generate({ ...opts, temperature: 0.8, topK: 5, seed: 3, tokens: 12 });
    expect(a.tokens).toEqual(b.tokens);
  });

  it("bad options fail with a clear message", async () => {
    const ck = await checkpoint;
    await expect(generate({ checkpoint: ck, prompt: "x", tokens: 0 })).rejects.toThrow(/--tokens must be an integer ≥ 1, got 0/);
    await expect(generate({ checkpoint: ck, prompt: "x", tokens: 2, backend: "tpu" as never })).rejects.toThrow(/--backend must be auto, webgpu or cpu, got 'tpu'/);
    await expect(generate({ checkpoint: join(dir, "none.safetensors"), prompt: "x", tokens: 2 })).rejects.toThrow(/none\.safetensors/);
    mkdirSync(join(dir, "empty"), { recursive: true });
    await expect(generate({ checkpoint: join(dir, "empty"), prompt: "x", tokens: 2 })).rejects.toThrow(/empty: no checkpoint in this directory/);
  });

  it("takes the --checkpoint directory of `fogc run` and samples from its newest checkpoint", async () => {
    const ck = await checkpoint;
    const opts = { prompt: "the ", temperature: 0, backend: "cpu" as const, tokens: 4 };
    const fromDir = await generate({ ...opts, checkpoint: join(dir, "ck") });
    const fromFile = await generate({ ...opts, checkpoint: ck });
    expect(fromDir.tokens).toEqual(fromFile.tokens);
  });
});
