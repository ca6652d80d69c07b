// GEMM throughput on the local adapter: the FP8 (e4m3×e4m3→f32) subgroup-matrix path and the f32
// FMA path at 4096³ and the 390M model's projection shapes, after checking 256³ against a CPU
// oracle; `--torch` adds PyTorch cuBLAS figures and ratios. Prints figures, never asserts on time.
import { spawnSync } from "node:child_process";
import { type GemmConfig, type GemmPath, type GemmTile, gemmPathsFor, generateGemm, resolveTile } from "../compiler/kernels/gemm.js";
import { type Gpu, createComputePipeline, openGpu, readBuffer, runKernel, uploadBuffer } from "../runtime/device.js";
import { decodeFP8, unpackFP8 } from "../runtime/fp8.js";
import { gemmTileFor, operandData, timeDispatches, tuneGemm } from "../runtime/gemm-autotune.js";

interface Shape {
  name: string;
  M: number;
  N: number;
  K: number;
}

// Tokens M = 8192; qkv = q 1024 + k 512 + v 512 (grouped KV); the MLP is 1024 → 6144 → 1024.
const SHAPES: Shape[] = [
  { name: "4096", M: 4096, N: 4096, K: 4096 },
  { name: "qkv", M: 8192, N: 2048, K: 1024 },
  { name: "out", M: 8192, N: 1024, K: 1024 },
  { name: "fc1", M: 8192, N: 6144, K: 1024 },
  { name: "fc2", M: 8192, N: 1024, K: 6144 },
];

// Usage: node --import tsx bench/gemm.ts [--torch] [--shapes 4096,qkv,out,fc1,fc2,MxNxK]
//   [--layout NT|NN|TN] [--paths subgroup-matrix,fma] [--sgmm-tile '{"bk":32,...}'] [--fma-tile '{...}']
//   [--tune] [--tune-seconds S]
// Tiles: the cached autotuner winner for the shape on this adapter, else chooseGemmTile's default for
// the adapter; --*-tile fields override either. --tune first times the candidate tiles of each shape
// (runtime/gemm-autotune.ts), prints them and caches the winners (then used here).
function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const flag = (name: string): boolean => process.argv.includes(`--${name}`);

const layout = arg("layout") ?? "NT";
// --shapes takes the names above and/or MxNxK triples (e.g. 512x512x512 for a quick run).
const shapes: Shape[] = (arg("shapes")?.split(",") ?? SHAPES.map((s) => s.name)).map((n) => {
  const named = SHAPES.find((s) => s.name === n);
  if (named) return named;
  const [M, N, K] = n.split("x").map(Number);
  if (![M, N, K].every((d) => Number.isInteger(d) && d > 0)) throw new Error(`--shapes: '${n}' is neither ${SHAPES.map((s) => s.name).join("/")} nor MxNxK`);
  return { name: n, M, N, K };
});
const tileArg = (name: string): Partial<GemmTile> | undefined => {
  const t = arg(name);
  return t ? (JSON.parse(t) as Partial<GemmTile>) : undefined;
};

/** The FP8 config for the subgroup-matrix path, f32 for the FMA path (what each is compared with). */
function configFor(path: GemmPath, s: Shape, gpu: Gpu): GemmConfig {
  const fp8 = path === "subgroup-matrix";
  const shape = { M: s.M, N: s.N, K: s.K, transA: layout[0] === "T", transB: layout[1] === "T", a: fp8 ? "e4m3" : "f32", b: fp8 ? "e4m3" : "f32", path } as const;
  const tile = { ...gemmTileFor(gpu.caps.adapterName, gpu.caps, shape), ...tileArg(fp8 ? "sgmm-tile" : "fma-tile") };
  return { name: `bench_${path}_${s.name}`, ...shape, out: "f32", tile };
}

/** Random operand words (FP8 codes from sums of uniforms, or f32) and the values they hold. */
function operand(cfg: GemmConfig, which: "a" | "b", n: number, seed: number): { data: Uint32Array | Float32Array; values?: Float32Array } {
  const type = cfg[which];
  const data = operandData(type, n, seed);
  if (type === "f32") return { data, values: data as Float32Array };
  if (type !== "e4m3" && type !== "e5m2") throw new Error(`bench: operand type ${type}`);
  return { data, values: decodeFP8(unpackFP8(data as Uint32Array, n), type) };
}

/** A tile in one short line: the fields that matter for its path. */
function tileText(path: GemmPath, t: GemmTile): string {
  if (path === "fma") return `${t.fmaLoads} ${t.bm}x${t.bn}x${t.bk} ${t.tm}x${t.tn}`;
  return `${t.bm}x${t.bn}x${t.bk} sg${t.sgRows}x${t.sgCols} mma${t.mma.M}x${t.mma.N}x${t.mma.K} ${t.sharedLayout}${t.pad ? `+${t.pad}` : ""}${t.stages === 2 ? " 2-stage" : ""}`;
}

/** --tune: times the candidate tiles of every shape and path, prints them, caches the winners. */
async function tune(gpu: Gpu, paths: GemmPath[]): Promise<void> {
  const seconds = Number(arg("tune-seconds") ?? 0.15);
  for (const s of shapes) {
    for (const path of paths) {
      const { tile: _tile, name: _name, out: _out, ...shape } = configFor(path, s, gpu);
      const tf = (sec: number) => fmt((2 * s.M * s.N * s.K) / sec / 1e12);
      console.log(`\ntune ${path} ${s.name} (${s.M}×${s.N}×${s.K}, ${layout}, ${shape.a}×${shape.b}): TFLOP/s per tile (round 1 / round 2)`);
      const r = await tuneGemm(gpu, shape, {
        secondsPerCandidate: seconds,
        progress: (t) => console.log(`  (round 1) ${tileText(path, t.tile).padEnd(44)} ${t.samples?.length ? tf(t.samples[0]) : `failed: ${t.error}`}`),
        log: (t) => console.log(`  ${tileText(path, t.tile).padEnd(44)} ${t.samples?.length ? t.samples.map(tf).join(" / ") : `failed: ${t.error}`}`),
      });
      console.log(`  best: ${tileText(path, r.best.tile)} ${tf(r.best.seconds)} (default ${tf(r.defaultSeconds)}); cached as ${r.key}`);
    }
  }
}

/** Runs cfg once on small data and compares with an f64 product of the decoded operands. */
async function verify(gpu: Gpu, cfg: GemmConfig): Promise<boolean> {
  const { M, N, K } = cfg;
  const A = operand(cfg, "a", M * K, 7);
  const B = operand(cfg, "b", K * N, 11);
  const k = generateGemm(cfg);
  const pipeline = await createComputePipeline(gpu, k.wgsl, k.entryPoint, cfg.name);
  const bufs = [uploadBuffer(gpu, A.data, "a"), uploadBuffer(gpu, B.data, "b"), uploadBuffer(gpu, new Float32Array(M * N), "c")];
  await runKernel(gpu, pipeline, bufs, k.workgroups);
  const got = new Float32Array(await readBuffer(gpu, bufs[2], M * N * 4));
  bufs.forEach((b) => b.destroy());
  const a = (m: number, kk: number) => A.values![cfg.transA ? kk * M + m : m * K + kk];
  const b = (kk: number, n: number) => B.values![cfg.transB ? n * K + kk : kk * N + n];
  // Products of FP8 values are exact in f16×f16→f32; the sum's order (and the tensor cores' own
  // accumulation) differ from f64: allow 1e-4 of Σ|a·b| (K = 256: the f32 worst case is 1.5e-5).
  let worst = 0;
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let acc = 0;
      let mag = 0;
      for (let kk = 0; kk < K; kk++) {
        const p = a(m, kk) * b(kk, n);
        acc += p;
        mag += Math.abs(p);
      }
      worst = Math.max(worst, Math.abs(got[m * N + n] - acc) / (1e-4 * mag + 1e-30));
    }
  }
  const ok = worst <= 1;
  console.log(`verify ${cfg.path} ${cfg.a}×${cfg.b}→${cfg.out} ${layout} ${M}×${N}×${K}: ${ok ? "PASS" : "FAIL"} (max |err| / (1e-4·Σ|ab|) = ${worst.toExponential(2)})`);
  return ok;
}

/** TFLOP/s of cfg on random data (warm-up, then enough dispatches for ~0.3 s). */
async function bench(gpu: Gpu, cfg: GemmConfig): Promise<number> {
  const { M, N, K } = cfg;
  const k = generateGemm(cfg);
  const pipeline = await createComputePipeline(gpu, k.wgsl, k.entryPoint, cfg.name);
  const bufs = [
    uploadBuffer(gpu, operand(cfg, "a", M * K, 1).data, "a"),
    uploadBuffer(gpu, operand(cfg, "b", K * N, 2).data, "b"),
    gpu.device.createBuffer({ size: M * N * 4, usage: GPUBufferUsage.STORAGE, label: "c" }),
  ];
  const bindGroup = gpu.device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: bufs.map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  // Warm-up: ~0.3 s of dispatches, so that the GPU's clocks are up (idle while the pipeline compiled).
  let once = await timeDispatches(gpu, pipeline, bindGroup, k.workgroups, 3);
  once = await timeDispatches(gpu, pipeline, bindGroup, k.workgroups, Math.max(3, Math.min(500, Math.ceil(0.3 / once))));
  const reps = Math.max(5, Math.min(200, Math.ceil(0.3 / once)));
  const sec = await timeDispatches(gpu, pipeline, bindGroup, k.workgroups, reps);
  bufs.forEach((b) => b.destroy());
  return (2 * M * N * K) / sec / 1e12;
}

interface TorchRow {
  name: string;
  bf16?: number;
  fp8?: number | null;
  fp32?: number;
  error?: string;
}

// cuBLAS through PyTorch, same shapes and layout (A [M,K] · B[N,K]ᵀ): bf16, fp32 (TF32 off) and
// FP8 e4m3 via torch._scaled_mm with unit scales; CUDA events around 20 (fp32: 5) products.
const TORCH_SCRIPT = `
import json, sys, torch
torch.backends.cuda.matmul.allow_tf32 = False
def bench(fn, iters):
    for _ in range(3): fn()
    torch.cuda.synchronize()
    s = torch.cuda.Event(enable_timing=True); e = torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(iters): fn()
    e.record(); torch.cuda.synchronize()
    return s.elapsed_time(e) / iters
for sh in json.loads(sys.argv[1]):
    M, N, K = sh["M"], sh["N"], sh["K"]
    tf = 2 * M * N * K / 1e9
    r = {"name": sh["name"]}
    a = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(N, K, device="cuda", dtype=torch.bfloat16)
    r["bf16"] = tf / bench(lambda: a @ b.t(), 20)
    af, bf = a.float(), b.float()
    r["fp32"] = tf / bench(lambda: af @ bf.t(), 5)
    try:
        a8, b8 = a.to(torch.float8_e4m3fn), b.to(torch.float8_e4m3fn)
        one = torch.tensor(1.0, device="cuda")
        r["fp8"] = tf / bench(lambda: torch._scaled_mm(a8, b8.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16), 20)
    except Exception as ex:
        r["fp8"] = None
        r["error"] = str(ex)[:160]
    print(json.dumps(r), flush=True)
`;

function torchFigures(list: Shape[]): Map<string, TorchRow> {
  const rows = new Map<string, TorchRow>();
  const run = spawnSync("python3", ["-c", TORCH_SCRIPT, JSON.stringify(list)], { encoding: "utf8", timeout: 600_000 });
  if (run.status !== 0) {
    console.log(`torch: not available (${(run.stderr || run.error?.message || "").trim().split("\n").pop()})`);
    return rows;
  }
  for (const line of run.stdout.split("\n")) {
    if (line.trim().startsWith("{")) {
      const r = JSON.parse(line) as TorchRow;
      rows.set(r.name, r);
    }
  }
  return rows;
}

const fmt = (x: number | null | undefined): string => (x === undefined || x === null ? "-" : x >= 10 ? x.toFixed(1) : x.toPrecision(3));

async function main(): Promise<void> {
  const gpu = await openGpu();
  const { caps } = gpu;
  console.log(`adapter: ${caps.adapterName}${caps.isCpu ? " (software)" : ""}`);
  console.log(`f16 ${caps.f16}, subgroups ${caps.subgroups} (${caps.subgroupMinSize}..${caps.subgroupMaxSize}), timestamps ${caps.timestamps}, workgroup storage ${caps.maxComputeWorkgroupStorageSize} B`);
  console.log(`subgroup matrices: ${caps.subgroupMatrix.map((c) => `${c.componentType}→${c.resultComponentType} ${c.M}×${c.N}×${c.K}`).join(", ") || "none"}`);
  const available = gemmPathsFor(caps);
  const paths = (arg("paths")?.split(",") as GemmPath[] | undefined) ?? available;
  for (const p of paths) if (!available.includes(p)) throw new Error(`path ${p} is not available on this adapter (has: ${available.join(", ")})`);
  if (!paths.includes("subgroup-matrix")) console.log("subgroup-matrix path: not available here (FP8 figures need it)");

  if (flag("tune")) await tune(gpu, paths);

  // Correctness first: 256³ on each path (FP8 on the subgroup-matrix path, f32 on FMA).
  let allPass = true;
  for (const p of paths) allPass = (await verify(gpu, configFor(p, { name: "verify", M: 256, N: 256, K: 256 }, gpu))) && allPass;
  if (!allPass) console.log("verification FAILED: the figures below time wrong results");

  const torch = flag("torch") ? torchFigures(shapes) : new Map<string, TorchRow>();
  const head = ["shape", "M×N×K", ...paths.map((p) => (p === "fma" ? "f32 FMA" : "FP8 sgmm")), ...(flag("torch") ? ["cuBLAS bf16", "cuBLAS fp8", "cuBLAS fp32", "sgmm/bf16", "sgmm/fp8", "FMA/fp32"] : [])];
  console.log(`\nTFLOP/s (layout ${layout}; FP8 = e4m3×e4m3→f32, f32 = f32×f32→f32)`);
  console.log(head.join("\t"));
  for (const s of shapes) {
    const ours = new Map<GemmPath, number>();
    for (const p of paths) ours.set(p, await bench(gpu, configFor(p, s, gpu)));
    for (const p of paths) console.log(`  ${s.name} ${p} tile: ${tileText(p, resolveTile(configFor(p, s, gpu), gpu.caps))}`);
    const row = [s.name, `${s.M}×${s.N}×${s.K}`, ...paths.map((p) => fmt(ours.get(p)))];
    if (flag("torch")) {
      const t = torch.get(s.name);
      const ratio = (x: number | undefined, y: number | null | undefined) => (x && y ? (x / y).toFixed(3) : "-");
      row.push(fmt(t?.bf16), fmt(t?.fp8), fmt(t?.fp32));
      row.push(ratio(ours.get("subgroup-matrix"), t?.bf16), ratio(ours.get("subgroup-matrix"), t?.fp8), ratio(ours.get("fma"), t?.fp32));
    }
    console.log(row.join("\t"));
  }
  gpu.destroy();
}

await main();
