// What the kurtosis probes cost a training run (docs/probes.md, docs/perf.md): step time with probes
// at the model's interval (`probes.every`, default 10) against probes off, measured side by side on
// one executor. The sweep alternates blocks of `every` steps — "on": every−1 plain steps and one probe
// step (with the monitor and the log record the loop computes from it), "off": `every` plain steps —
// in ABBA order so drift cancels, and prints ms/step of each and the overhead in %. Never asserts on time.
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import type { PrecisionMode } from "../compiler/model.js";
import { compile } from "../compiler/pipeline.js";
import { probeOutputs } from "../compiler/probes.js";
import { type AdamWStep, type Batch, type Executor, zeroMoments } from "../runtime/executor.js";
import { initParams } from "../runtime/init.js";
import { KurtosisMonitor, kurtosisRecord } from "../runtime/kurtosis.js";
import { Prng } from "../runtime/prng.js";
import { type BackendChoice, createExecutor } from "../runtime/train.js";

const USAGE = `Usage: node --import tsx bench/probe-overhead.ts [FILE.fog] [options]
  FILE.fog          the model (default examples/fog-flash-tiny.fog); bench/fog-flash-gpt2-small.fog on the GPU host
  --model NAME      the model of the file (default its last)
  --precision MODE  bf16 | fp8 | fp8dpa (default: the file's recipe)
  --batch B --seq T batch shape (default: the train section's)
  --pairs N         on/off block pairs measured (default 10)
  --backend B       webgpu | cpu | auto (default webgpu: the local adapter)`;

function fail(message: string): never {
  process.stderr.write(`probe-overhead: ${message}\n`);
  process.exit(1);
}

function positiveInt(what: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!(Number.isInteger(n) && n >= 1)) fail(`${what} must be an integer ≥ 1, got '${v}'`);
  return n;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  const at = q * (s.length - 1);
  const lo = Math.floor(at);
  return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (at - lo);
}

let args;
try {
  args = parseArgs({
    allowPositionals: true,
    options: {
      model: { type: "string" },
      precision: { type: "string" },
      batch: { type: "string" },
      seq: { type: "string" },
      pairs: { type: "string", default: "10" },
      backend: { type: "string", default: "webgpu" },
      help: { type: "boolean", default: false },
    },
  });
} catch (e) {
  fail(`${(e as Error).message}\n${USAGE}`);
}
if (args.values.help) {
  console.log(USAGE);
  process.exit(0);
}
const opts = args.values;
if (args.positionals.length > 1) fail(`one .fog file expected, got ${args.positionals.join(" ")}`);
const file = resolve(args.positionals[0] ?? new URL("../examples/fog-flash-tiny.fog", import.meta.url).pathname);
const precision = opts.precision as PrecisionMode | undefined;
if (precision !== undefined && !["bf16", "fp8", "fp8dpa"].includes(precision)) fail(`--precision must be bf16, fp8 or fp8dpa, got '${precision}'`);
const backend = opts.backend as BackendChoice;
if (!["auto", "cpu", "webgpu"].includes(backend)) fail(`--backend must be webgpu, cpu or auto, got '${backend}'`);
const pairs = positiveInt("--pairs", opts.pairs)!;
const batchSize = positiveInt("--batch", opts.batch);
const seq = positiveInt("--seq", opts.seq);

const compiled = compile(file, {
  ...(opts.model ? { model: opts.model } : {}),
  ...(precision ? { precision } : {}),
  ...(batchSize ? { batch: batchSize } : {}),
  ...(seq ? { seqLen: seq } : {}),
});
const errors = compiled.diagnostics.filter((d) => d.severity === "error");
if (!compiled.program || errors.length) fail(`${file} does not compile:\n${errors.map((d) => d.message).join("\n")}`);
const { forward, train, model, stats } = compiled.program;
const probeCount = probeOutputs(train).length;
if (!model.probes.enabled || probeCount === 0) fail(`${model.name} has its probes disabled: nothing to measure`);
const every = model.probes.every;
const { batch, seqLen } = train;

const exec: Executor = await createExecutor(backend, { forward, train, model }, (line) => process.stderr.write(line + "\n")).catch((e: Error) => fail(e.message));
if (!exec.trainStepWithProbes) fail(`the ${exec.backend} backend does not compute probes (no trainStepWithProbes)`);
try {
  const params = initParams(forward, 0);
  await exec.loadState({ params, m: zeroMoments(params), v: zeroMoments(params), scales: [], step: 0 });
  const prng = Prng.fromSeed(1);
  const nextBatch = (): Batch => {
    const tokens = Int32Array.from({ length: batch * seqLen }, () => prng.nextInt(model.vocab));
    return { tokens, targets: tokens.map((_, i) => tokens[(i + 1) % tokens.length]), batch, seqLen };
  };
  let step = 0;
  const hyper = (): AdamWStep => ({ step: ++step, lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clip: 1 });
  const monitor = new KurtosisMonitor();

  const plainMs: number[] = [];
  const probeMs: number[] = [];
  /** One block of `every` steps; with probes its last step is the probe step, as in train(). Returns ms. */
  const block = async (probes: boolean, record: boolean): Promise<number> => {
    let total = 0;
    for (let i = 1; i <= every; i++) {
      const b = nextBatch();
      const t0 = performance.now();
      if (probes && i === every) {
        const s = await exec.trainStepWithProbes!(b, hyper());
        if (!s.kurtosis) fail(`the ${exec.backend} backend returned no kurtosis on a probe step`);
        monitor.observe(step, s.kurtosis);
        kurtosisRecord(s.kurtosis);
        const dt = performance.now() - t0;
        if (record) probeMs.push(dt);
        total += dt;
      } else {
        await exec.trainStep(b, hyper());
        const dt = performance.now() - t0;
        if (record && probes) plainMs.push(dt);
        total += dt;
      }
    }
    return total;
  };

  console.log(
    `${model.name} (${(stats.params / 1e6).toFixed(2)} M parameters), ${precision ?? "recipe precision"}, batch ${batch} × ${seqLen}, on ${exec.backend}: ` +
      `${probeCount} probes every ${every} steps; ${pairs} pairs of ${every}-step blocks, ABBA order`,
  );
  // Warm-up: the first use of each command buffer builds its pipelines on some drivers.
  await block(true, false);
  await block(false, false);

  const on: number[] = [];
  const off: number[] = [];
  for (let p = 0; p < pairs; p++) {
    const order = p % 2 === 0 ? [true, false] : [false, true];
    for (const probes of order) (probes ? on : off).push((await block(probes, true)) / every);
    process.stderr.write(`  pair ${p + 1}/${pairs}: on ${on.at(-1)!.toFixed(2)} ms/step, off ${off.at(-1)!.toFixed(2)} ms/step\n`);
  }
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  const overheads = on.map((x, i) => 100 * (x / off[i] - 1));
  console.log(`  probes on  (every ${every}): ${mean(on).toFixed(3)} ms/step (median block ${median(on).toFixed(3)})`);
  console.log(`  probes off          : ${mean(off).toFixed(3)} ms/step (median block ${median(off).toFixed(3)})`);
  console.log(
    `  overhead ${(100 * (mean(on) / mean(off) - 1)).toFixed(2)} % of the step time (per pair: median ${median(overheads).toFixed(2)} %, ` +
      `quartiles ${quantile(overheads, 0.25).toFixed(2)} .. ${quantile(overheads, 0.75).toFixed(2)} %)`,
  );
  console.log(
    `  a probe step takes ${median(probeMs).toFixed(3)} ms (median), a plain step ${median(plainMs).toFixed(3)} ms: ` +
      `${(median(probeMs) - median(plainMs)).toFixed(3)} ms more, spread over ${every} steps: ` +
      `${((100 * (median(probeMs) - median(plainMs))) / (every * median(plainMs))).toFixed(2)} % expected from step medians`,
  );
} finally {
  exec.dispose();
}
