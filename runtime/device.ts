// The thin typed device layer over Dawn (`webgpu` npm): opens an adapter + device with every useful
// feature and the adapter's max limits, reports capabilities (GpuCaps), and turns Dawn's errors
// (WGSL compile errors, validation, OOM, device loss) into DeviceErrors that say what to do.
import { create, globals } from "webgpu";

// GPUBufferUsage, GPUMapMode, ... become globals as soon as this module is loaded.
Object.assign(globalThis, globals);

/** One subgroup-matrix (tensor-core) shape the adapter offers: component→result type, M×N×K. */
export interface SubgroupMatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

export interface GpuCaps {
  f16: boolean;
  subgroups: boolean;
  subgroupMinSize: number;
  subgroupMaxSize: number;
  subgroupMatrix: SubgroupMatrixConfig[];
  timestamps: boolean;
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
  adapterName: string;
  /** A software adapter (lavapipe/SwiftShader): correct but slow; size tests accordingly. */
  isCpu: boolean;
}

export interface Gpu {
  device: GPUDevice;
  caps: GpuCaps;
  /** The message of the last error no error scope caught (null if none so far). */
  readonly lastError: string | null;
  destroy(): void;
}

/** A device-layer failure: `message` says what went wrong, `fix` says what to do about it. */
export class DeviceError extends Error {
  readonly fix: string;
  constructor(message: string, fix: string) {
    super(message);
    this.name = "DeviceError";
    this.fix = fix;
  }
}

const NO_ADAPTER_FIX =
  "install a Vulkan driver: on a GPU-less Linux machine run `bash scripts/install-lavapipe.sh` " +
  "(Mesa lavapipe from bookworm-backports; set XDG_RUNTIME_DIR), or run with --backend cpu";

// One comma-separated option: a second `enable-dawn-features=` would replace the first. Without
// vulkan_enable_f16_on_nvidia Dawn hides shader-f16 and the f16 subgroup-matrix configs on NVIDIA.
// Timestamps unquantised (Dawn rounds them down to 65.536 µs by default, measured on lavapipe: a
// per-kernel profile of short kernels then reads 0 or 65.5 µs); a separate key, so it adds to the toggles.
const DAWN_OPTIONS = ["enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia,use_vulkan_memory_model", "disable-dawn-features=timestamp_quantization"];

const WANTED_FEATURES = [
  "shader-f16",
  "subgroups",
  "subgroup-size-control",
  "timestamp-query",
  "chromium-experimental-subgroup-matrix",
  "chromium-experimental-timestamp-query-inside-passes",
];

const WANTED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
] as const;

// The Dawn instance, created on first use and then kept for the life of the process. Measured with
// webgpu 0.6.2 (lavapipe and NVIDIA): once an instance that has made a device is garbage-collected,
// the process segfaults (also when the device was destroyed first), and a kept instance does not
// stop the process from exiting. So it is never dropped.
let instance: GPU | null = null;

function getInstance(): GPU {
  instance ??= create(DAWN_OPTIONS);
  return instance;
}

/** Reads `adapter.info.subgroupMatrixConfigs` (a Dawn extension absent from @webgpu/types). */
function readSubgroupMatrixConfigs(info: GPUAdapterInfo): SubgroupMatrixConfig[] {
  const raw = (info as unknown as { subgroupMatrixConfigs?: unknown }).subgroupMatrixConfigs;
  if (!raw || typeof raw !== "object" || !(Symbol.iterator in raw)) return [];
  const out: SubgroupMatrixConfig[] = [];
  for (const c of raw as Iterable<unknown>) {
    if (!c || typeof c !== "object") continue;
    const r = c as Record<string, unknown>;
    out.push({
      componentType: String(r.componentType),
      resultComponentType: String(r.resultComponentType),
      M: Number(r.M),
      N: Number(r.N),
      K: Number(r.K),
    });
  }
  return out;
}

function adapterName(info: GPUAdapterInfo): string {
  return info.description || [info.vendor, info.architecture, info.device].filter(Boolean).join(" ") || "unknown adapter";
}

/** Opens a WebGPU device; throws DeviceError "no WebGPU adapter found" (with the fix) when there is none. */
export async function openGpu(
  options: { powerPreference?: GPUPowerPreference; requireF16?: boolean } = {},
): Promise<Gpu> {
  const gpuApi = getInstance();
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpuApi.requestAdapter({ powerPreference: options.powerPreference ?? "high-performance" });
  } catch (e) {
    throw new DeviceError(`no WebGPU adapter found (${(e as Error).message})`, NO_ADAPTER_FIX);
  }
  if (!adapter) {
    throw new DeviceError("no WebGPU adapter found", NO_ADAPTER_FIX);
  }
  const info = adapter.info;
  const name = adapterName(info);
  const has = (f: string): boolean => adapter.features.has(f);
  if (options.requireF16 && !has("shader-f16")) {
    throw new DeviceError(
      `adapter '${name}' has no shader-f16`,
      "use an adapter with shader-f16 (lavapipe and NVIDIA have it), or choose an f32 kernel path",
    );
  }
  const requiredFeatures = WANTED_FEATURES.filter(has) as GPUFeatureName[];
  const requiredLimits: Record<string, number> = {};
  for (const l of WANTED_LIMITS) requiredLimits[l] = adapter.limits[l];

  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredFeatures, requiredLimits, label: "fogc" });
  } catch (e) {
    throw new DeviceError(
      `could not open a device on '${name}': ${(e as Error).message}`,
      "check the driver (node scripts/probe-adapter.mjs prints the adapter), or run with --backend cpu",
    );
  }

  let destroyed = false;
  let lastError: string | null = null;
  let reported = false;
  device.lost.then((lost) => {
    if (!destroyed && lost.reason !== "destroyed") {
      console.error(`fogc: WebGPU device on '${name}' lost (${lost.reason}): ${lost.message}`);
    }
  });
  device.onuncapturederror = (ev: GPUUncapturedErrorEvent) => {
    lastError = ev.error.message;
    if (!reported) {
      reported = true;
      console.error(`fogc: uncaptured WebGPU error: ${firstLine(lastError)} (later ones: gpu.lastError)`);
    }
  };

  const caps: GpuCaps = {
    f16: device.features.has("shader-f16"),
    subgroups: device.features.has("subgroups"),
    subgroupMinSize: info.subgroupMinSize ?? 0,
    subgroupMaxSize: info.subgroupMaxSize ?? 0,
    subgroupMatrix: device.features.has("chromium-experimental-subgroup-matrix") ? readSubgroupMatrixConfigs(info) : [],
    timestamps: device.features.has("timestamp-query"),
    maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
    maxBufferSize: device.limits.maxBufferSize,
    maxComputeWorkgroupStorageSize: device.limits.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: device.limits.maxComputeInvocationsPerWorkgroup,
    adapterName: name,
    isCpu: info.isFallbackAdapter || info.architecture === "software" || /llvmpipe|lavapipe|swiftshader/i.test(name),
  };

  return {
    device,
    caps,
    get lastError() {
      return lastError;
    },
    destroy() {
      if (destroyed) return;
      destroyed = true;
      device.destroy();
    },
  };
}

/** True when Dawn finds any WebGPU adapter (lavapipe counts). */
export async function hasWebGpuAdapter(): Promise<boolean> {
  try {
    return (await getInstance().requestAdapter()) !== null;
  } catch {
    return false;
  } finally {
  }
}

function firstLine(s: string): string {
  const i = s.indexOf("\n");
  return i < 0 ? s : s.slice(0, i);
}

/** Runs fn inside validation + out-of-memory error scopes; throws DeviceError naming `what` on either. */
export async function withErrorScope<T>(device: GPUDevice, fn: () => T | Promise<T>, what: string): Promise<T> {
  device.pushErrorScope("validation");
  device.pushErrorScope("out-of-memory");
  let result: T | undefined;
  let thrown: unknown = null;
  try {
    result = await fn();
  } catch (e) {
    thrown = e;
  }
  // Pop both scopes even when fn threw, so the scope stack stays balanced; fn's own error wins.
  const oom = await device.popErrorScope();
  const validation = await device.popErrorScope();
  if (thrown !== null) throw thrown;
  if (oom) {
    throw new DeviceError(`${what}: out of memory: ${oom.message}`, "use smaller buffers or batches (see gpu.caps.maxBufferSize)");
  }
  if (validation) {
    throw new DeviceError(
      `${what}: validation error: ${validation.message}`,
      "a bug in the caller of the device layer: the message names the WebGPU object and call",
    );
  }
  return result as T;
}

const roundUp4 = (n: number): number => Math.ceil(n / 4) * 4;

/** A buffer of at least sizeBytes (rounded up to 4 bytes). */
export function createBuffer(gpu: Gpu, sizeBytes: number, usage: GPUBufferUsageFlags, label: string): GPUBuffer {
  return gpu.device.createBuffer({ size: Math.max(4, roundUp4(sizeBytes)), usage, label });
}

/** A STORAGE | COPY_SRC | COPY_DST buffer holding `data` (size rounded up to 4 bytes, zero-padded). */
export function uploadBuffer(gpu: Gpu, data: ArrayBufferView, label: string, extraUsage: GPUBufferUsageFlags = 0): GPUBuffer {
  const buffer = gpu.device.createBuffer({
    size: Math.max(4, roundUp4(data.byteLength)),
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST | extraUsage,
    mappedAtCreation: true,
    label,
  });
  new Uint8Array(buffer.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  buffer.unmap();
  return buffer;
}

/** Copies the first sizeBytes of a COPY_SRC buffer back to the CPU. */
export async function readBuffer(gpu: Gpu, buffer: GPUBuffer, sizeBytes: number): Promise<ArrayBuffer> {
  const size = roundUp4(sizeBytes);
  const staging = gpu.device.createBuffer({
    size: Math.max(4, size),
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    label: `${buffer.label || "buffer"} (readback)`,
  });
  try {
    const enc = gpu.device.createCommandEncoder();
    enc.copyBufferToBuffer(buffer, 0, staging, 0, size);
    gpu.device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    return staging.getMappedRange(0, size).slice(0, sizeBytes);
  } finally {
    staging.destroy();
  }
}

/**
 * Compiles WGSL and builds a compute pipeline (layout "auto"). WGSL errors become one DeviceError
 * listing `line:col: message` and the offending source line for each error.
 */
export async function createComputePipeline(
  gpu: Gpu,
  wgsl: string,
  entryPoint: string,
  label: string,
): Promise<GPUComputePipeline> {
  const { device } = gpu;
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ code: wgsl, label });
  const info = await module.getCompilationInfo();
  const scoped = await device.popErrorScope();
  const errors = info.messages.filter((m) => m.type === "error");
  if (errors.length > 0 || scoped) {
    const lines = wgsl.split("\n");
    const detail = errors.map((m) => {
      const src = m.lineNum > 0 ? lines[m.lineNum - 1] : undefined;
      return `  ${m.lineNum}:${m.linePos}: ${m.message}` + (src !== undefined ? `\n    | ${src}` : "");
    });
    if (detail.length === 0 && scoped) detail.push(`  ${scoped.message}`);
    throw new DeviceError(
      `kernel '${label}': WGSL compilation failed\n${detail.join("\n")}`,
      "fix the WGSL generator for this kernel (the lines above are 1-based in the generated source)",
    );
  }
  return withErrorScope(
    device,
    async () => {
      try {
        return await device.createComputePipelineAsync({ label, layout: "auto", compute: { module, entryPoint } });
      } catch (e) {
        throw new DeviceError(
          `kernel '${label}': pipeline creation failed: ${(e as Error).message}`,
          `check the entry point '${entryPoint}' and its bindings`,
        );
      }
    },
    `pipeline '${label}'`,
  );
}

/** Binds buffers at @group(0) @binding(0..n-1), dispatches once, submits and waits for completion. */
export async function runKernel(
  gpu: Gpu,
  pipeline: GPUComputePipeline,
  buffers: GPUBuffer[],
  workgroups: [number, number, number],
): Promise<void> {
  const { device } = gpu;
  const maxWg = device.limits.maxComputeWorkgroupsPerDimension;
  if (workgroups.some((n) => n > maxWg)) {
    throw new DeviceError(
      `kernel '${pipeline.label}': dispatch ${workgroups.join("×")} exceeds ${maxWg} workgroups per dimension`,
      "split the dispatch over y/z or give each invocation more work",
    );
  }
  await withErrorScope(
    device,
    () => {
      const bindGroup = device.createBindGroup({
        label: `${pipeline.label} bindings`,
        layout: pipeline.getBindGroupLayout(0),
        entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
      });
      const enc = device.createCommandEncoder({ label: pipeline.label });
      const pass = enc.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(workgroups[0], workgroups[1], workgroups[2]);
      pass.end();
      device.queue.submit([enc.finish()]);
    },
    `dispatch of '${pipeline.label}'`,
  );
  await device.queue.onSubmittedWorkDone();
}
