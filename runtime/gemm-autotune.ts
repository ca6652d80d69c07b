// GEMM tile autotuner: times candidate tiles for one GEMM shape on the live adapter with timestamp
// queries (wall clock where the adapter has none), checks each candidate's result against the
// default tile's, and caches the winner in a JSON file keyed by adapter + path + layout + operand
// types + shape. The epilogue and output type do not enter the key: the tiles are timed with an f32
// output and no epilogue, which the K loop dominates.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { chooseGemmTile, type GemmConfig, type GemmOperandType, type GemmTile, type GemmTileCaps, generateGemm } from "../compiler/kernels/gemm.js";
import { sgmmSharedBytes, sgmmThreads } from "../compiler/kernels/gemm-sgmm.js";
import { createComputePipeline, type Gpu, readBuffer, uploadBuffer } from "./device.js";
import { encodeBF16, encodeFP8, packFP8 } from "./fp8.js";

/** The GEMM fields the tile choice depends on. */
export type GemmShape = Pick<GemmConfig, "M" | "N" | "K" | "transA" | "transB" | "a" | "b" | "path">;

/** `$XDG_CACHE_HOME/fogc/gemm-tiles.json`, else `~/.cache/fogc/gemm-tiles.json`. */
export function tileCachePath(): string {
  const base = process.env.XDG_CACHE_HOME || join(homedir(), ".cache");
  return join(base, "fogc", "gemm-tiles.json");
}

export function gemmTuneKey(adapterName: string, s: GemmShape): string {
  return `${adapterName}|${s.path}|${s.transA ? "T" : "N"}${s.transB ? "T" : "N"}|${s.a}x${s.b}|${s.M}x${s.N}x${s.K}`;
}

export interface CachedTile {
  tile: GemmTile;
  /** Seconds per GEMM of the winner, and of the untuned default, when tuned. */
  seconds: number;
  defaultSeconds: number;
  tunedAt: string;
}

export type TileCache = Record<string, CachedTile>;

/** The tuned tile of `s` on `adapterName` among `entries`, if it was tuned. */
export function cachedTile(entries: TileCache, adapterName: string, s: GemmShape): GemmTile | undefined {
  return entries[gemmTuneKey(adapterName, s)]?.tile;
}

/** The cache file's entries ({} where there is no file yet). */
export function readTileCache(path = tileCachePath()): TileCache {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return {}; // no cache yet
  }
  try {
    const parsed = JSON.parse(text) as { entries?: TileCache };
    return parsed.entries ?? {};
  } catch (e) {
    throw new Error(`GEMM tile cache ${path} is not valid JSON (${(e as Error).message}); delete it to start afresh`);
  }
}

function writeCache(path: string, entries: TileCache): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify({ version: 1, entries }, null, 1)}\n`);
  renameSync(tmp, path); // atomic: a concurrent reader sees the old file or the new one
}

/** The cached winner for this shape on this adapter, if it was tuned. */
export function cachedGemmTile(adapterName: string, s: GemmShape, path = tileCachePath()): GemmTile | undefined {
  return cachedTile(readTileCache(path), adapterName, s);
}

/** The tile to run with: the cached winner, else chooseGemmTile's default. */
export function gemmTileFor(adapterName: string, caps: GemmTileCaps, s: GemmShape, path = tileCachePath()): GemmTile {
  return cachedGemmTile(adapterName, s, path) ?? chooseGemmTile(s, caps);
}

const product = <T, U>(xs: T[], ys: U[]): [T, U][] => xs.flatMap((x) => ys.map((y): [T, U] => [x, y]));

/** Candidate tiles for a shape: the default first, then variants around it that fit the adapter. */
export function gemmTileCandidates(s: GemmShape, caps: GemmTileCaps): GemmTile[] {
  const def = chooseGemmTile(s, caps);
  const out: GemmTile[] = [def];
  if (s.path === "fma") {
    // Direct variant (CPU): row blocks shared by the whole workgroup (bm = tm: A loads are uniform)
    // or split over it, × column blocks × invocations; shared variant (GPU): tiles × K step.
    const direct = caps.isCpu ? [[4, 4, 8], [8, 4, 8], [8, 8, 8], [16, 4, 8], [16, 8, 8], [16, 4, 16], [32, 4, 8]] : [[8, 4, 32]];
    for (const [tm, tn, threads] of direct) out.push({ ...def, fmaLoads: "direct", tm, tn, bk: 4, bm: tm, bn: threads * tn });
    for (const [tm, tn] of caps.isCpu ? [[4, 4], [8, 8]] : [[8, 8]]) out.push({ ...def, fmaLoads: "direct", tm, tn, bk: 4, bm: 8 * tm, bn: 8 * tn });
    if (!caps.isCpu) {
      for (const [bm, bn, tm, tn] of [[128, 128, 8, 8], [128, 64, 8, 4], [64, 128, 4, 8], [64, 64, 4, 4], [128, 128, 8, 4], [64, 64, 4, 8]]) {
        for (const bk of [8, 16, 32]) {
          if (bk * (bm + bn) * 4 + 4 <= (caps.maxComputeWorkgroupStorageSize ?? 16384)) out.push({ ...def, fmaLoads: "shared", bm, bn, tm, tn, bk });
        }
      }
    }
  } else {
    // (On the H100 at 4096³, 64-wide tiles, bk 64 and unpadded copies lost to these: docs/perf.md.)
    // Geometries bm, bn, sgRows, sgCols: 8 subgroups of 32×64 / 64×32 results, 8 of 64×64, 16 of 32×64.
    // Single-buffered copies only k-major (as stored measured the same, docs/perf.md).
    const geometries = [[128, 128, 4, 2], [128, 128, 2, 4], [256, 128, 4, 2], [256, 128, 8, 2], [128, 256, 4, 4]];
    const layouts = [
      { sharedLayout: "k-major" as const, pad: 8, stages: 2 as const },
      { sharedLayout: "storage" as const, pad: 8, stages: 2 as const },
      { sharedLayout: "k-major" as const, pad: 8, stages: 1 as const },
    ];
    for (const [bm, bn, sgRows, sgCols] of geometries) {
      for (const [bk, lay] of product([16, 32], layouts)) {
        const t = { ...def, bm, bn, sgRows, sgCols, bk, ...lay };
        if (bk % t.mma.K || bm % (sgRows * t.mma.M) || bn % (sgCols * t.mma.N) || sgmmThreads(t) > 1024) continue;
        if (sgmmSharedBytes(s, t) <= (caps.maxComputeWorkgroupStorageSize ?? 16384)) out.push(t);
      }
    }
  }
  const seen = new Set<string>();
  return out.filter((t) => !seen.has(JSON.stringify(t)) && !!seen.add(JSON.stringify(t)));
}

/** Operand words for `type`: FP8/bf16 codes of sums of uniforms (bench-like magnitudes), or f32. */
export function operandData(type: GemmOperandType, n: number, seed: number): Float32Array | Uint32Array {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
  const raw = Float32Array.from({ length: n }, () => (next() + next() + next() - 1.5) * 4);
  if (type === "f32") return raw;
  if (type === "bf16") {
    const codes = encodeBF16(raw);
    const words = new Uint32Array(Math.ceil(n / 2));
    for (let i = 0; i < n; i++) words[i >> 1] |= codes[i] << ((i & 1) * 16);
    return words;
  }
  return packFP8(encodeFP8(raw, type));
}

/** Seconds per dispatch: GPU timestamps around `reps` dispatches in one pass, else wall clock. */
export async function timeDispatches(gpu: Gpu, pipeline: GPUComputePipeline, bindGroup: GPUBindGroup, wg: [number, number, number], reps: number): Promise<number> {
  const { device } = gpu;
  const query = gpu.caps.timestamps ? device.createQuerySet({ type: "timestamp", count: 2 }) : null;
  const resolve = query ? device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC }) : null;
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass(query ? { timestampWrites: { querySet: query, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } } : {});
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  for (let i = 0; i < reps; i++) pass.dispatchWorkgroups(...wg);
  pass.end();
  if (query && resolve) enc.resolveQuerySet(query, 0, 2, resolve, 0);
  const t0 = performance.now();
  device.queue.submit([enc.finish()]);
  await device.queue.onSubmittedWorkDone();
  const wall = (performance.now() - t0) / 1e3;
  if (!query || !resolve) return wall / reps;
  const ts = new BigInt64Array(await readBuffer(gpu, resolve, 16));
  query.destroy();
  resolve.destroy();
  const ns = Number(ts[1] - ts[0]);
  // Quantised or unsupported timestamps read 0: fall back to the wall clock.
  return ns > 0 ? ns / 1e9 / reps : wall / reps;
}

export interface TileTiming {
  tile: GemmTile;
  /** Seconds per GEMM (the better of two rounds); absent when the candidate failed (then `error` says why). */
  seconds?: number;
  /** Each round's seconds per GEMM. */
  samples?: number[];
  error?: string;
}

export interface TuneOptions {
  candidates?: GemmTile[];
  /** Target seconds of timed dispatches per candidate (default 0.2). */
  secondsPerCandidate?: number;
  /** Cache file to update with the winner; null to leave every cache alone. */
  cachePath?: string | null;
  /** Called for each candidate once all are timed. */
  log?: (t: TileTiming) => void;
  /** Called for each candidate after its first round (progress, in case a run is cut short). */
  progress?: (t: TileTiming) => void;
}

export interface TuneResult {
  key: string;
  best: TileTiming & { seconds: number };
  defaultSeconds: number;
  timings: TileTiming[];
}

/**
 * Times every candidate tile of `shape` on `gpu` (f32 output, no epilogue) and returns the fastest
 * whose result matches the default tile's (max |difference| ≤ 1e-4 of max |C|: the same exact
 * products summed in another order); records it in the cache unless cachePath is null.
 */
export async function tuneGemm(gpu: Gpu, shape: GemmShape, opts: TuneOptions = {}): Promise<TuneResult> {
  const { M, N, K } = shape;
  const candidates = opts.candidates ?? gemmTileCandidates(shape, gpu.caps);
  const perCandidate = opts.secondsPerCandidate ?? 0.2;
  const preScale = shape.path === "subgroup-matrix" && shape.a === "bf16";
  const base: GemmConfig = { ...shape, name: "tune", out: "f32", ...(preScale ? { preScale } : {}) };
  const { device } = gpu;
  const a = uploadBuffer(gpu, operandData(shape.a, M * K, 1), "a");
  const b = uploadBuffer(gpu, operandData(shape.b, K * N, 2), "b");
  const c = device.createBuffer({ size: M * N * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC, label: "c" });
  // preScale's amax words: any positive value times the same tiles (operandData stays below 8).
  const amax = uploadBuffer(gpu, Uint32Array.of(0x41000000), "amax");
  const byName: Record<string, GPUBuffer> = { a, b, c, amax_a: amax, amax_b: amax };
  const timings: TileTiming[] = [];
  const runs: { timing: TileTiming; time: (reps: number) => Promise<number>; reps: number }[] = [];
  let reference: Float32Array | null = null;
  let refMax = 0;
  try {
    // Round 1: build, check against the default's result, time; round 2 times every candidate again
    // in the same order, and a candidate's figure is its better round. Measured on the H100: round 1
    // read 2–8× low (the GPU idles while pipelines compile, and its clocks drop), round 2 did not.
    for (const tile of candidates) {
      const timing: TileTiming = { tile, samples: [] };
      try {
        const k = generateGemm({ ...base, tile });
        const pipeline = await createComputePipeline(gpu, k.wgsl, k.entryPoint, `tune_${timings.length}`);
        const bindGroup = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: k.bindings.map((x, binding) => ({ binding, resource: { buffer: byName[x.name] } })) });
        const time = (reps: number) => timeDispatches(gpu, pipeline, bindGroup, k.workgroups, reps);
        await time(1); // warm-up (first-use costs)
        const got = new Float32Array(await readBuffer(gpu, c, M * N * 4));
        if (!reference) {
          reference = got;
          refMax = got.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
        } else {
          let worst = 0;
          for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - reference[i]));
          if (!(worst <= 1e-4 * refMax)) throw new Error(`result differs from the default tile's by ${worst} (max |C| ${refMax})`);
        }
        const once = await time(2);
        const reps = Math.max(2, Math.min(200, Math.ceil(perCandidate / Math.max(once, 1e-6))));
        timing.samples!.push(await time(reps));
        runs.push({ timing, time, reps });
      } catch (e) {
        timing.error = (e as Error).message.split("\n")[0];
      }
      timings.push(timing);
      opts.progress?.(timing);
    }
    for (const r of runs) r.timing.samples!.push(await r.time(r.reps));
  } finally {
    for (const x of [a, b, c, amax]) x.destroy();
  }
  for (const t of timings) {
    if (t.samples?.length) t.seconds = Math.min(...t.samples);
    opts.log?.(t);
  }
  const ok = timings.filter((t): t is TileTiming & { seconds: number } => t.seconds !== undefined);
  if (!ok.length) throw new Error(`gemm tune ${gemmTuneKey(gpu.caps.adapterName, shape)}: no candidate ran (${timings[0]?.error})`);
  const best = ok.reduce((x, y) => (y.seconds < x.seconds ? y : x));
  const defaultSeconds = timings[0].seconds ?? NaN;
  const key = gemmTuneKey(gpu.caps.adapterName, shape);
  if (opts.cachePath !== null) {
    const path = opts.cachePath ?? tileCachePath();
    const entries = readTileCache(path);
    entries[key] = { tile: best.tile, seconds: best.seconds, defaultSeconds, tunedAt: new Date().toISOString() };
    writeCache(path, entries);
  }
  return { key, best, defaultSeconds, timings };
}
