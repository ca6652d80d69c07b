// GPU plan → device objects, made once: physical buffers from a lifetime-based memory plan,
// pipelines compiled once per distinct kernel (cached across plans), and one bind group per
// dispatch; `encode` then records a whole step into a command encoder.
import { createComputePipeline, DeviceError, type Gpu, withErrorScope } from "./device.js";
import type { KernelSource } from "../compiler/kernels/reduce.js";
import { type GraphPlan, PlanError } from "./gpu-plan.js";

/** Compiled pipelines by WGSL text (the first line, a comment naming the kernel, excluded), per device. */
export class PipelineCache {
  private readonly map = new Map<string, Promise<GPUComputePipeline>>();
  private tail: Promise<unknown> = Promise.resolve();
  constructor(readonly gpu: Gpu) {}

  get(src: KernelSource, label: string): Promise<GPUComputePipeline> {
    const key = `${src.entryPoint}\n${src.wgsl.slice(src.wgsl.indexOf("\n") + 1)}`;
    let p = this.map.get(key);
    if (!p) {
      // One at a time: createComputePipeline's error scopes are a per-device stack, so concurrent
      // calls would pop each other's errors and blame the wrong kernel.
      p = this.tail.then(() => createComputePipeline(this.gpu, src.wgsl, src.entryPoint, label));
      this.tail = p.catch(() => undefined);
      this.map.set(key, p);
    }
    return p;
  }

  get size(): number {
    return this.map.size;
  }
}

export interface Dispatch {
  label: string;
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  workgroups: [number, number, number];
}

/** A plan on a device: physical buffers, pipelines and bind groups, made once; `encode` records one step. */
export interface BuiltPlan {
  dispatches: Dispatch[];
  /** The GPU buffer behind a logical buffer (a transient one may be shared with others by lifetime). */
  buffer(id: number): GPUBuffer;
  /** Bytes of transient memory after lifetime reuse, and before. */
  memory: { transient: number; unshared: number; const: number };
  /** Records the plan's dispatches (after zeroing per-step scratch) into `enc`; `perKernel` gives each its own pass. */
  encode(enc: GPUCommandEncoder, timestamps?: { querySet: GPUQuerySet; perKernel: boolean }): void;
  destroy(): void;
}

/**
 * Assigns transient buffers to physical ones by lifetime (first to last kernel that binds them):
 * a buffer is reused once its last user has run, best fit within 2× of the size asked.
 */
function memoryPlan(plan: GraphPlan): { phys: Map<number, number>; sizes: number[] } {
  const lastUse = new Map<number, number>();
  plan.kernels.forEach((k, i) => {
    for (const b of k.bindings) if (plan.buffers[b.buffer].kind === "transient") lastUse.set(b.buffer, i);
  });
  const phys = new Map<number, number>(); // logical → physical index
  const sizes: number[] = [];
  const free: number[] = [];
  const releaseAt = new Map<number, number[]>();
  for (const [b, l] of lastUse) releaseAt.set(l, [...(releaseAt.get(l) ?? []), b]);
  plan.kernels.forEach((k, i) => {
    for (const b of k.bindings) {
      if (plan.buffers[b.buffer].kind !== "transient" || phys.has(b.buffer)) continue;
      const need = plan.buffers[b.buffer].bytes;
      let best = -1;
      for (let j = 0; j < free.length; j++) {
        const s = sizes[free[j]];
        if (s >= need && s <= 2 * need && (best < 0 || s < sizes[free[best]])) best = j;
      }
      if (best >= 0) phys.set(b.buffer, free.splice(best, 1)[0]);
      else {
        phys.set(b.buffer, sizes.length);
        sizes.push(need);
      }
    }
    for (const b of releaseAt.get(i) ?? []) free.push(phys.get(b)!);
  });
  return { phys, sizes };
}

/** Makes the plan's buffers (externals from `externals` by key), pipelines (via `cache`) and bind groups. */
export async function buildPlan(gpu: Gpu, plan: GraphPlan, externals: ReadonlyMap<string, GPUBuffer>, cache: PipelineCache, label: string): Promise<BuiltPlan> {
  const { device } = gpu;
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  // Pipelines first: their creation pushes error scopes of its own, which must not interleave with ours.
  const ps = await Promise.all(plan.kernels.map((k) => cache.get(k.source, k.label)));
  const owned: GPUBuffer[] = [];
  const gpuBuf: GPUBuffer[] = [];
  const { phys, sizes } = memoryPlan(plan);
  const physical: GPUBuffer[] = [];
  const memory = { transient: 0, unshared: 0, const: 0 };
  const release = (e: unknown): never => {
    for (const b of [...owned, ...physical]) b.destroy();
    throw e;
  };
  await withErrorScope(
    device,
    () => {
      sizes.forEach((size, pi) => physical.push(device.createBuffer({ size, usage, label: `${label}: transient #${pi}` })));
      for (const b of plan.buffers) {
        if (b.kind === "transient") {
          memory.unshared += b.bytes;
          const pi = phys.get(b.id);
          if (pi === undefined) continue; // never bound
          gpuBuf[b.id] = physical[pi];
        } else if (b.kind === "external") {
          const e = externals.get(b.key!);
          if (!e) throw new PlanError(`${label}: no external buffer '${b.key}'`);
          gpuBuf[b.id] = e;
        } else {
          const buf = device.createBuffer({ size: b.bytes, usage, label: `${label}: ${b.label}` });
          if (b.init) device.queue.writeBuffer(buf, 0, b.init.buffer, b.init.byteOffset, b.init.byteLength);
          if (b.kind === "const") memory.const += b.bytes;
          owned.push(buf);
          gpuBuf[b.id] = buf;
        }
      }
    },
    `${label}: buffers`,
  ).catch(release);
  owned.push(...physical);
  memory.transient = sizes.reduce((a, b) => a + b, 0);
  const maxWg = device.limits.maxComputeWorkgroupsPerDimension;
  const dispatches = await withErrorScope(
    device,
    () =>
      plan.kernels.map((k, i): Dispatch => {
        if (k.source.workgroups.some((w) => w > maxWg)) {
          throw new DeviceError(`kernel '${k.label}': dispatch ${k.source.workgroups.join("×")} exceeds ${maxWg} workgroups per dimension`, "a generator must split its grid (reduce.ts grid())");
        }
        const bindGroup = device.createBindGroup({
          label: k.label,
          layout: ps[i].getBindGroupLayout(0),
          entries: k.bindings.map((v, binding) => ({ binding, resource: { buffer: gpuBuf[v.buffer], offset: v.offset, size: v.bytes ?? plan.buffers[v.buffer].bytes } })),
        });
        return { label: k.label, pipeline: ps[i], bindGroup, workgroups: k.source.workgroups };
      }),
    `${label}: bind groups`,
  ).catch(release);
  const clears = plan.buffers.filter((b) => b.clear).map((b) => gpuBuf[b.id]);
  return {
    dispatches,
    memory,
    buffer: (id) => gpuBuf[id],
    encode(enc, timestamps) {
      for (const b of clears) enc.clearBuffer(b);
      const run = (pass: GPUComputePassEncoder, d: Dispatch): void => {
        pass.setPipeline(d.pipeline);
        pass.setBindGroup(0, d.bindGroup);
        pass.dispatchWorkgroups(...d.workgroups);
      };
      if (timestamps?.perKernel) {
        dispatches.forEach((d, i) => {
          const pass = enc.beginComputePass({ label: d.label, timestampWrites: { querySet: timestamps.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
          run(pass, d);
          pass.end();
        });
        return;
      }
      const tw = timestamps ? { timestampWrites: { querySet: timestamps.querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } } : {};
      const pass = enc.beginComputePass({ label, ...tw });
      for (const d of dispatches) run(pass, d);
      pass.end();
    },
    destroy() {
      for (const b of owned) b.destroy();
    },
  };
}
