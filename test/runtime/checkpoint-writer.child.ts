// Child process for the SIGKILL test of test/runtime/checkpoint.test.ts: writes checkpoints
// step 1, 2, 3, ... into argv[2]; halfway through step 3's write it prints "MID" and blocks, so the
// parent can kill it in the middle of a write.
import { checkpointPath, writeCheckpoint } from "../../runtime/checkpoint.js";

const dir = process.argv[2];
const N = 1 << 18; // 1 MiB per tensor, 12 tensors per checkpoint
const names = ["a", "b", "c", "d"];

for (let step = 1; ; step++) {
  const params = new Map(names.map((n) => [n, new Float32Array(N).fill(step)]));
  const m = new Map(names.map((n) => [n, new Float32Array(N).fill(-step)]));
  const v = new Map(names.map((n) => [n, new Float32Array(N).fill(step / 2)]));
  let blocked = false;
  writeCheckpoint(
    checkpointPath(dir, step),
    {
      meta: { model: "kill_test", file: "/nowhere/kill.fog", shapesHash: "0123456789abcdef", step, totalSteps: 100, seed: 0, precision: "recipe", tokenizer: "bytes", sampler: { prng: [1, 2, 3, 4], step } },
      state: { params, m, v, scales: [], step },
      shapes: new Map(names.map((n) => [n, [N]])),
    },
    {
      onProgress: (written, total) => {
        if (step === 3 && !blocked && written > total / 2) {
          blocked = true;
          process.stdout.write("MID\n");
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60_000);
        }
      },
    },
  );
  process.stdout.write(`WROTE ${step}\n`);
}
