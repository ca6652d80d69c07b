// The adapter's FMA rate on registers alone (no memory traffic): the ceiling any FMA kernel of
// this adapter can reach, to read GEMM figures against (on llvmpipe it is far below the CPU's
// nominal peak). Accumulators per invocation 1…16, vec4 each, 1024 FMAs per accumulator.
//   node --import tsx bench/fma-peak.ts [--workgroups N]
import { createComputePipeline, openGpu } from "../runtime/device.js";

const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const gpu = await openGpu();
const { device } = gpu;
const workgroups = Number(arg("workgroups") ?? (gpu.caps.isCpu ? 512 : 65535));
const wgsl = (acc: number): string => {
  const each = (f: (i: number) => string, sep: string): string => Array.from({ length: acc }, (_, i) => f(i)).join(sep);
  return `@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  ${each((i) => `var a${i} = vec4<f32>(f32(gid.x) * ${i + 1}e-7);`, "\n  ")}
  let m = vec4<f32>(0.999);
  let c = vec4<f32>(1e-4);
  for (var k = 0u; k < 1024u; k++) {
    ${each((i) => `a${i} = fma(a${i}, m, c);`, "\n    ")}
  }
  y[gid.x] = ${each((i) => `a${i}.x + a${i}.w`, " + ")};
}`;
};
const y = device.createBuffer({ size: workgroups * 64 * 4, usage: GPUBufferUsage.STORAGE });
console.log(`adapter: ${gpu.caps.adapterName}; ${workgroups} workgroups of 64`);
for (const acc of [1, 4, 8, 16]) {
  const pipeline = await createComputePipeline(gpu, wgsl(acc), "main", `fma peak ${acc}`);
  const bindGroup = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: y } }] });
  const time = async (): Promise<number> => {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(workgroups);
    pass.end();
    const t0 = performance.now();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
    return performance.now() - t0;
  };
  await time();
  const ms = Math.min(await time(), await time(), await time());
  const flops = workgroups * 64 * 1024 * acc * 4 * 2;
  console.log(`${String(acc).padStart(2)} vec4 accumulators: ${ms.toFixed(1).padStart(8)} ms  ${(flops / ms / 1e6).toFixed(2).padStart(8)} GFLOP/s`);
}
gpu.destroy();
