// withGpu(fn) for kernel tests: opens the WebGPU device once per test file (lavapipe in CI), runs fn
// inside a validation error scope, and fails, never silently skips, when there is no adapter
// (FOGC_SKIP_GPU=1 is the local escape hatch: the test is then skipped with the reason shown).
import { TestRunner, afterAll } from "vitest";
import { DeviceError, openGpu, withErrorScope, type Gpu } from "../../runtime/device.js";

export const SKIP_GPU = process.env.FOGC_SKIP_GPU === "1";
export const SKIP_GPU_REASON = "FOGC_SKIP_GPU=1: GPU test skipped (unset it to run on lavapipe or a GPU)";

let opening: Promise<Gpu> | null = null;

// Each test file runs in its own module graph, so this cache lives for one file.
afterAll(async () => {
  const pending = opening;
  opening = null;
  if (pending) (await pending.catch(() => null))?.destroy();
});

/** The file's shared device (opened on first use). Throws an Error carrying the DeviceError's fix. */
export async function getGpu(): Promise<Gpu> {
  opening ??= openGpu();
  try {
    return await opening;
  } catch (e) {
    opening = null;
    if (e instanceof DeviceError) throw new Error(`${e.message}\nfix: ${e.fix}\n(or set FOGC_SKIP_GPU=1 to skip GPU tests locally)`);
    throw e;
  }
}

/**
 * Runs fn with the file's device inside a validation + OOM error scope (any WebGPU error in fn fails
 * the test, naming the test). With FOGC_SKIP_GPU=1 the current test is skipped with the reason.
 */
export async function withGpu<T>(fn: (gpu: Gpu) => T | Promise<T>): Promise<T> {
  if (SKIP_GPU) {
    const test = TestRunner.getCurrentTest();
    if (test) test.context.skip(SKIP_GPU_REASON);
    throw new Error(`${SKIP_GPU_REASON}; withGpu was called outside a test`);
  }
  const gpu = await getGpu();
  return withErrorScope(gpu.device, () => fn(gpu), `GPU test '${TestRunner.getCurrentTest()?.name ?? "?"}'`);
}
