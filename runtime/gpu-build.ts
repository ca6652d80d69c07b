// GPU plan → device objects, made once: transient buffers at offsets inside a few arenas by lifetime,
// pipelines compiled once per distinct kernel (cached across plans), and one bind group per
// dispatch; `encode` then records a whole step into a command encoder.
import { createComputePipeline, DeviceError, type Gpu, withErrorScope } from "./device.js";
import type { KernelSource } from "../compiler/kernels/reduce.js";
import { arenaPlan, type GraphPlan, PlanError } from "./gpu-plan.js";

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
  /** The GPU buffer behind a pinned, const or external logical buffer (throws for a transient one: see `view`). */
  buffer(id: number): GPUBuffer;
  /** Where a logical buffer lives: its own GPU buffer at 0, or a transient one's range inside an arena. */
  view(id: number): { buffer: GPUBuffer; offset: number; size: number };
  /**
   * Bytes of transient memory (the arenas), of the transient buffers before sharing, and of the
   * constants; `arenas`: how many GPU buffers hold the transient ones.
   */
  memory: { transient: number; unshared: number; const: number; arenas: number };
  /** Records the plan's dispatches (after zeroing per-step scratch) into `enc`; `perKernel` gives each its own pass. */
  encode(enc: GPUCommandEncoder, timestamps?: { querySet: GPUQuerySet; perKernel: boolean }): void;
  destroy(): void;
}

/**
 * Makes the plan's buffers (externals from `externals` by key; transient ones at offsets inside a few
 * arenas, runtime/gpu-plan.ts arenaPlan), pipelines (via `cache`) and bind groups.
 */
export async function buildPlan(gpu: Gpu, plan: GraphPlan, externals: ReadonlyMap<string, GPUBuffer>, cache: PipelineCache, label: string): Promise<BuiltPlan> {
  const { device } = gpu;
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  // Pipelines first: their creation pushes error scopes of its own, which must not interleave with ours.
  const ps = await Promise.all(plan.kernels.map((k) => cache.get(k.source, k.label)));
  const owned: GPUBuffer[] = [];
  const gpuBuf: GPUBuffer[] = [];
  const base: number[] = []; // a transient buffer's offset inside its arena
  const arena = arenaPlan(plan, { maxBufferBytes: device.limits.maxBufferSize, offsetAlign: device.limits.minStorageBufferOffsetAlignment });
  const physical: GPUBuffer[] = [];
  const memory = { transient: arena.transient, unshared: arena.unshared, const: 0, arenas: arena.arenas.length };
  const release = (e: unknown): never => {
    for (const b of [...owned, ...physical]) b.destroy();
    throw e;
  };
  await withErrorScope(
    device,
    () => {
      arena.arenas.forEach((size, ai) => physical.push(device.createBuffer({ size: Math.max(4, size), usage, label: `${label}: transient arena #${ai}` })));
      for (const b of plan.buffers) {
        if (b.kind === "transient") {
          const slot = arena.slots.get(b.id);
          if (slot === undefined) continue; // never bound
          gpuBuf[b.id] = physical[slot.arena];
          base[b.id] = slot.offset;
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
          entries: k.bindings.map((v, binding) => ({ binding, resource: { buffer: gpuBuf[v.buffer], offset: (base[v.buffer] ?? 0) + v.offset, size: v.bytes ?? plan.buffers[v.buffer].bytes } })),
        });
        return { label: k.label, pipeline: ps[i], bindGroup, workgroups: k.source.workgroups };
      }),
    `${label}: bind groups`,
  ).catch(release);
  const view = (id: number): { buffer: GPUBuffer; offset: number; size: number } => {
    const b = plan.buffers[id];
    if (!b || !gpuBuf[id]) throw new PlanError(`${label}: buffer #${id} has no GPU buffer (a transient buffer no kernel binds)`);
    return b.kind === "transient" ? { buffer: gpuBuf[id], offset: base[id], size: b.bytes } : { buffer: gpuBuf[id], offset: 0, size: gpuBuf[id].size };
  };
  const clears = plan.buffers.filter((b) => b.clear && gpuBuf[b.id]).map((b) => view(b.id));
  return {
    dispatches,
    memory,
    buffer(id) {
      if (plan.buffers[id]?.kind === "transient") throw new PlanError(`${label}: '${plan.buffers[id].label}' is transient: it lives inside an arena (use view())`);
      return view(id).buffer;
    },
    view,
    encode(enc, timestamps) {
      for (const c of clears) enc.clearBuffer(c.buffer, c.offset, Math.ceil(c.size / 4) * 4);
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
