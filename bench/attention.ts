// Times the fused attention kernels (forward, then backward = dQ + dK/dV) on the WebGPU adapter and
// prints TFLOP/s counted as causal model FLOPs, for f32 and FP8DPA inputs; with the JSON written by
// bench/attention_torch.py (PyTorch SDPA, bf16) it prints fogc/PyTorch ratios. Never asserts.
// --path picks the generator: the FMA tiles (attention.ts), the subgroup-matrix (tensor-core) kernels
// (attention-sgmm.ts), or both side by side (the default where the adapter has subgroup matrices).
// --sgmm-tiles S,C overrides the subgroup-matrix tiles of every pass (S subgroups, C-row steps), --fma-tiles
// BR,BC,LANES the FMA ones, for tuning; --shape PREFIX keeps the shapes whose label starts so.
//   node --import tsx bench/attention.ts [--small] [--iters N] [--path sgmm|fma|both] [--sgmm-tiles S,C]
//     [--fma-tiles BR,BC,LANES] [--shape PREFIX] [--torch FILE] [--json FILE]
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { type AttentionConfig, type AttentionPass, attention, attentionTiles } from "../compiler/kernels/attention.js";
import { attentionSgmm, attentionSgmmShape, attentionSgmmSupported, attentionSgmmTiles } from "../compiler/kernels/attention-sgmm.js";
import { type Gpu, createComputePipeline, openGpu, uploadBuffer } from "../runtime/device.js";

interface Shape {
  label: string;
  batch: number;
  seqLen: number;
  heads: number;
  kvHeads: number;
  headDim: number;
}

interface Result {
  label: string;
  fwd_ms: number;
  fwdbwd_ms: number;
  fwd_tflops: number;
  fwdbwd_tflops: number;
}

const FULL: Shape[] = [
  { label: "B8 T1024 H12 Dh64", batch: 8, seqLen: 1024, heads: 12, kvHeads: 12, headDim: 64 },
  { label: "B8 T4096 H8 KV4 Dh128", batch: 8, seqLen: 4096, heads: 8, kvHeads: 4, headDim: 128 },
];
// For CPU adapters (lavapipe): the same code path on shapes that finish in seconds.
const SMALL: Shape[] = [
  { label: "B1 T128 H2 Dh64", batch: 1, seqLen: 128, heads: 2, kvHeads: 2, headDim: 64 },
  { label: "B1 T128 H2 KV1 Dh128", batch: 1, seqLen: 128, heads: 2, kvHeads: 1, headDim: 128 },
];

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** Causal attention FLOPs (FlashAttention's convention): forward 4·B·H·T²·Dh/2, backward 2.5× that. */
function flops(s: Shape): { fwd: number; total: number } {
  const fwd = (4 * s.batch * s.heads * s.seqLen * s.seqLen * s.headDim) / 2;
  return { fwd, total: 3.5 * fwd };
}

function randomWords(n: number, fp8: boolean): Uint32Array {
  // FP8: random E4M3/E5M2 codes in [−2, 2] (exponent field < bias+2); f32: uniform in [−1, 1).
  const out = new Uint32Array(n);
  const f = new Float32Array(out.buffer);
  for (let i = 0; i < n; i++) {
    if (fp8) out[i] = ((Math.random() * 0x3f3f3f3f) >>> 0) & 0xbfbfbfbf;
    else f[i] = Math.random() * 2 - 1;
  }
  return out;
}

type Path = "sgmm" | "fma";

/** The kernel of one pass on `path`, and its tiles as text. */
function kernelFor(gpu: Gpu, cfg: AttentionConfig, pass: AttentionPass, path: Path) {
  if (path === "fma") {
    const given = arg("--fma-tiles")?.split(",").map(Number);
    const t = given ? { br: given[0], bc: given[1], lanes: given[2] } : attentionTiles(cfg, pass);
    return { k: attention({ ...cfg, tiles: t }, pass), tiles: `${t.br}×${t.bc}/${t.lanes}` };
  }
  const shape = attentionSgmmShape(gpu.caps);
  if (typeof shape === "string") throw new Error(`--path sgmm: ${shape}`);
  const given = arg("--sgmm-tiles")?.split(",").map(Number);
  const t = given ? { subgroups: given[0], cols: given[1] } : attentionSgmmTiles(cfg, pass, shape.mma, shape.subgroupSize);
  return { k: attentionSgmm(cfg, pass, shape.mma, shape.subgroupSize, t), tiles: `${t.subgroups * shape.mma.M}×${t.cols}/${t.subgroups}sg` };
}

async function bench(gpu: Gpu, s: Shape, fp8: boolean, iters: number, path: Path): Promise<Result | undefined> {
  const cfg: AttentionConfig = {
    name: "bench",
    ...s,
    scale: 1 / Math.sqrt(s.headDim),
    causal: true,
    maxSharedBytes: gpu.caps.maxComputeWorkgroupStorageSize,
    // As the lowering configures them on a GPU (runtime/gpu-lower.ts attnConfig): row reductions by shuffles.
    ...(gpu.caps.subgroups && !gpu.caps.isCpu ? { subgroupSize: gpu.caps.subgroupMinSize, subgroups: true } : {}),
    ...(fp8 ? { fp8: { scaleInv: { q: 0, k: 0, v: 0, dO: 0 }, scale: { p: 1, dS: 2 }, amax: { p: 0, dS: 1 } } } : {}),
  };
  const label = `${s.label} ${fp8 ? "fp8dpa" : "f32"} ${path}`;
  if (path === "sgmm" && !attentionSgmmSupported(cfg, gpu.caps)) {
    console.log(`${label.padEnd(39)} (not supported by the subgroup-matrix kernels on this adapter)`);
    return undefined;
  }
  const nq = s.batch * s.seqLen * s.heads * s.headDim;
  const nk = s.batch * s.seqLen * s.kvHeads * s.headDim;
  const words = (n: number): number => (fp8 ? n / 4 : n);
  const usage = GPUBufferUsage.STORAGE;
  const buf = (data: ArrayBufferView, label: string): GPUBuffer => uploadBuffer(gpu, data, label, usage);
  const zeros = (n: number, label: string): GPUBuffer => gpu.device.createBuffer({ size: n * 4, usage: usage | GPUBufferUsage.COPY_SRC, label });
  const b: Record<string, GPUBuffer> = {
    q: buf(randomWords(words(nq), fp8), "q"),
    k: buf(randomWords(words(nk), fp8), "k"),
    v: buf(randomWords(words(nk), fp8), "v"),
    dout: buf(randomWords(words(nq), fp8), "dout"),
    o: zeros(nq, "o"),
    lse: zeros(s.batch * s.heads * s.seqLen, "lse"),
    delta: zeros(s.batch * s.heads * s.seqLen, "delta"),
    dq: zeros(nq, "dq"),
    dk: zeros(nk, "dk"),
    dv: zeros(nk, "dv"),
    scales: buf(Float32Array.of(1 / 64, 448, 1024), "scales"),
    amax: zeros(4, "amax"),
  };
  const passes = await Promise.all(
    (["fwd", "bwd_dq", "bwd_dkv"] as AttentionPass[]).map(async (pass) => {
      const { k, tiles } = kernelFor(gpu, cfg, pass, path);
      const pipeline = await createComputePipeline(gpu, k.wgsl, k.entryPoint, `attention ${pass}`);
      const entries = k.bindings.map((x, binding) => ({ binding, resource: { buffer: b[x.name] } }));
      const bindGroup = gpu.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
      return { pipeline, bindGroup, workgroups: k.workgroups, tiles };
    }),
  );
  const time = async (count: number, n: number): Promise<number> => {
    const enc = gpu.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (let i = 0; i < n; i++)
      for (const p of passes.slice(0, count)) {
        pass.setPipeline(p.pipeline);
        pass.setBindGroup(0, p.bindGroup);
        pass.dispatchWorkgroups(...p.workgroups);
      }
    pass.end();
    const t0 = performance.now();
    gpu.device.queue.submit([enc.finish()]);
    await gpu.device.queue.onSubmittedWorkDone();
    return (performance.now() - t0) / n;
  };
  await time(3, 1); // warm-up (first dispatches also page in the buffers)
  const fwdMs = await time(1, iters);
  const totalMs = await time(3, iters);
  for (const x of Object.values(b)) x.destroy();
  const f = flops(s);
  const tiles = passes.map((p) => p.tiles).join(" ");
  console.log(
    `${label.padEnd(39)} fwd ${fwdMs.toFixed(2).padStart(9)} ms ${(f.fwd / fwdMs / 1e9).toPrecision(3).padStart(7)} TFLOP/s` +
      `   fwd+bwd ${totalMs.toFixed(2).padStart(9)} ms ${(f.total / totalMs / 1e9).toPrecision(3).padStart(7)} TFLOP/s   tiles ${tiles}`,
  );
  return { label, fwd_ms: fwdMs, fwdbwd_ms: totalMs, fwd_tflops: f.fwd / fwdMs / 1e9, fwdbwd_tflops: f.total / totalMs / 1e9 };
}

const gpu = await openGpu();
const shapes = (process.argv.includes("--small") || gpu.caps.isCpu ? SMALL : FULL).filter((s) => s.label.startsWith(arg("--shape") ?? ""));
const iters = Number(arg("--iters") ?? (gpu.caps.isCpu ? 1 : 5));
console.log(`adapter: ${gpu.caps.adapterName}; workgroup memory ${gpu.caps.maxComputeWorkgroupStorageSize} B; ${iters} iterations; causal FLOPs`);
const hasSgmm = typeof attentionSgmmShape(gpu.caps) !== "string";
const pathArg = arg("--path") ?? (hasSgmm ? "both" : "fma");
if (!["sgmm", "fma", "both"].includes(pathArg)) throw new Error(`--path ${pathArg}: expected sgmm, fma or both`);
const paths: Path[] = pathArg === "both" ? ["fma", "sgmm"] : [pathArg as Path];
console.log(`generators: ${paths.join(", ")}${hasSgmm ? "" : ` (subgroup matrices: ${attentionSgmmShape(gpu.caps)})`}`);
const results: Result[] = [];
for (const s of shapes)
  for (const fp8 of [false, true])
    for (const path of paths) {
      const r = await bench(gpu, s, fp8, iters, path);
      if (r) results.push(r);
    }

const torchFile = arg("--torch") ?? "bench/attention_torch.json";
if (existsSync(torchFile)) {
  const torch = JSON.parse(readFileSync(torchFile, "utf8")) as { device: string; results: Result[] };
  console.log(`\nratio fogc / PyTorch SDPA bf16 (${torch.device}, ${torchFile}):`);
  for (const r of results) {
    const t = torch.results.find((x) => r.label.startsWith(x.label));
    if (t) console.log(`${r.label.padEnd(39)} fwd ${(r.fwd_tflops / t.fwd_tflops).toFixed(3)}   fwd+bwd ${(r.fwdbwd_tflops / t.fwdbwd_tflops).toFixed(3)}`);
  }
} else {
  console.log(`\n(no ${torchFile}: run python3 bench/attention_torch.py --out ${torchFile} on the same GPU for ratios)`);
}
const jsonOut = arg("--json");
if (jsonOut) writeFileSync(jsonOut, JSON.stringify({ device: gpu.caps.adapterName, results }, null, 2));
gpu.destroy();
