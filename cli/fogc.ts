#!/usr/bin/env node
// The `fogc` command line: a thin yargs layer over the library API. It formats diagnostics,
// sets exit codes (1 for user errors) and never prints a stack trace for a user's mistake.
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { type Diagnostic, formatDiagnostic } from "../grammar/diagnostics.js";
import { check } from "../compiler/check.js";
import { printGraph } from "../compiler/ir-text.js";
import { compile } from "../compiler/pipeline.js";
import { ExportError, exportPytorch, writePackage } from "../compiler/export-pytorch.js";
import { formatSummary } from "../compiler/report.js";
import type { SourceFile } from "../compiler/resolve.js";
import { CheckpointError } from "../runtime/checkpoint.js";
import { DataError } from "../runtime/data.js";
import { generate } from "../runtime/generate.js";
import { RunError, train, WARNING_ACTIONS } from "../runtime/train.js";
import { reportCommand, RunReport } from "./report.js";

const PRECISIONS = ["bf16", "fp8", "fp8dpa"] as const;

function printDiagnostics(diags: Diagnostic[], files: Map<string, SourceFile>): boolean {
  for (const d of diags) console.error(formatDiagnostic(d, files.get(d.span.file)?.text) + "\n");
  const errors = diags.filter((d) => d.severity === "error").length;
  if (errors) console.error(`${errors} error${errors > 1 ? "s" : ""}`);
  return errors > 0;
}

/** Prints a user error of `run`/`generate` (with compile diagnostics if any) and sets exit code 1; rethrows anything else. */
function reportRunError(e: unknown): void {
  if (e instanceof RunError) {
    if (e.diagnostics.length) printDiagnostics(e.diagnostics, e.files);
    console.error(`fogc: ${e.message}`);
  } else if (e instanceof CheckpointError || e instanceof DataError) {
    console.error(`fogc: ${e.message}`);
  } else throw e;
  process.exitCode = 1;
}

/** Writes a file through a temporary name and a rename, so a crash never leaves half a file. */
function writeAtomic(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

async function main(): Promise<void> {
  await yargs(hideBin(process.argv))
    .scriptName("fogc")
    .usage("$0 <command> [options]\n\nA language, compiler and runtime for training transformers in FP8 on WebGPU.")
    .command(
      "check <files..>",
      "Parse and check .fog files; report every error with its file, line and column",
      (y) => y.positional("files", { type: "string", array: true, demandOption: true, describe: ".fog files" }).option("model", { type: "string", describe: "model to check (default: the file's last model)" }),
      (argv) => {
        let failed = false;
        for (const file of argv.files) {
          const r = check(file, argv.model ? { model: argv.model } : {});
          failed = printDiagnostics(r.diagnostics, r.files) || failed;
          if (r.model) console.log(`ok  ${file}  (model ${r.model.name})`);
        }
        process.exitCode = failed ? 1 : 0;
      },
    )
    .command(
      "compile <file>",
      "Compile a .fog model: print its parameters, FLOPs/token, memory and per-GEMM precision; write the IR",
      (y) =>
        y
          .positional("file", { type: "string", demandOption: true, describe: ".fog file" })
          .option("o", { alias: "out", type: "string", describe: "directory to write the IR text into" })
          .option("model", { type: "string", describe: "model to compile (default: the file's last model)" })
          .option("precision", { choices: PRECISIONS, describe: "override the recipe's mode" })
          .option("batch", { type: "number", describe: "batch size to lower for (default: the train section's)" })
          .option("seq-len", { type: "number", describe: "sequence length to lower for (default: the train section's)" })
          .option("emit", { choices: ["summary", "forward", "train"] as const, default: "summary" as const, describe: "what to print: the summary, the forward graph IR, or the whole training-step IR" }),
      (argv) => {
        const r = compile(argv.file, {
          ...(argv.model ? { model: argv.model } : {}),
          ...(argv.precision ? { precision: argv.precision } : {}),
          ...(argv.batch ? { batch: argv.batch } : {}),
          ...(argv["seq-len"] ? { seqLen: argv["seq-len"] } : {}),
        });
        if (printDiagnostics(r.diagnostics, r.files) || !r.program) {
          process.exitCode = 1;
          return;
        }
        const { model, forward, train, stats } = r.program;
        if (argv.emit === "forward") process.stdout.write(printGraph(forward));
        else if (argv.emit === "train") process.stdout.write(printGraph(train));
        else console.log(formatSummary(model, stats, train));
        if (argv.o) {
          mkdirSync(argv.o, { recursive: true });
          for (const [suffix, g] of [["forward", forward], ["train", train]] as const) {
            const path = join(argv.o, `${model.name}.${suffix}.ir`);
            writeAtomic(path, printGraph(g));
            console.log(`wrote ${path} (${g.nodes.length} nodes)`);
          }
        }
      },
    )
    .command(
      "run <file>",
      "Train a .fog model: JSONL log, validation loss, checkpoints, exact resume",
      (y) =>
        y
          .positional("file", { type: "string", demandOption: true, describe: ".fog file" })
          .option("model", { type: "string", describe: "model to train (default: the file's last model)" })
          .option("steps", { type: "number", describe: "optimizer steps (default: the train section's)" })
          .option("precision", { choices: PRECISIONS, describe: "override the recipe's mode" })
          .option("backend", { choices: ["auto", "cpu", "webgpu"] as const, default: "auto" as const, describe: "where to train; auto = WebGPU when available, else CPU" })
          .option("seed", { type: "number", describe: "seed for init and batch sampling (default: the train section's)" })
          .option("log", { type: "string", describe: "append one JSON record per log step to this .jsonl file" })
          .option("checkpoint", { type: "string", describe: "directory to write checkpoints to" })
          .option("checkpoint-every", { type: "number", describe: "steps between checkpoints (default: eval_every); one is always written at the end" })
          .option("resume", { type: "boolean", default: false, describe: "continue from the newest checkpoint in --checkpoint DIR" })
          .option("on-warning", {
            choices: WARNING_ACTIONS,
            default: "continue" as const,
            describe: "what a kurtosis early warning does: continue (log it), checkpoint (write one, go on; needs --checkpoint), stop (checkpoint if --checkpoint, then end with exit code 0)",
          })
          .option("report", {
            type: "string",
            describe: "at the end of the run (also a failed one), write the HTML report of its log to FILE (default: the --log path with .html; without --log, FILE.fog → FILE.html here, from a temporary log)",
          })
          .option("profile", { type: "boolean", default: false, describe: "time every GPU kernel of one step after two warm-up steps (timestamp queries) and print a table: GPU time, share of the step, TFLOP/s or GB/s (WebGPU only)" }),
      async (argv) => {
        const report = argv.report === undefined ? undefined : new RunReport(argv.report, argv.log, argv.file);
        try {
          const r = await train({
            file: argv.file,
            ...(argv.model ? { model: argv.model } : {}),
            ...(argv.steps !== undefined ? { steps: argv.steps } : {}),
            ...(argv.precision ? { precision: argv.precision } : {}),
            backend: argv.backend,
            ...(argv.seed !== undefined ? { seed: argv.seed } : {}),
            ...(report || argv.log ? { log: report?.log ?? argv.log } : {}),
            ...(argv.checkpoint ? { checkpoint: argv.checkpoint } : {}),
            ...(argv["checkpoint-every"] !== undefined ? { checkpointEvery: argv["checkpoint-every"] } : {}),
            resume: argv.resume,
            onWarning: argv["on-warning"],
            ...(argv.profile ? { profile: true } : {}),
          });
          const last = r.losses.at(-1);
          if (r.stopped) {
            const w = r.stopped.warning;
            console.log(
              `${r.model}: stopped at step ${r.stopped.step} of ${r.steps} by --on-warning stop after a kurtosis warning (${w.layer === null ? w.probe : `layer ${w.layer} ${w.probe}`}, see above)` +
                (r.checkpoint ? `\ncheckpoint ${r.checkpoint} (continue with --resume)` : "; no checkpoint written (no --checkpoint DIR)"),
            );
            return;
          }
          if (r.startStep >= r.steps) {
            console.log(`${r.model}: the checkpoint is already at step ${r.startStep} of ${r.steps}; nothing to train (pass a larger --steps)`);
            return;
          }
          console.log(
            `${r.model}: trained steps ${r.startStep + 1}..${r.steps} on ${r.backend}` +
              (last !== undefined ? `, loss ${last.toFixed(4)}` : "") +
              (r.valLoss !== undefined ? `, val_loss ${r.valLoss.toFixed(4)}` : "") +
              `, ${r.tokensPerSecond.toFixed(0)} tokens/s` +
              (r.checkpoint ? `\ncheckpoint ${r.checkpoint}` : ""),
          );
          if (r.profile) console.log("\n" + (await import("../runtime/profile.js")).formatProfile(r.profile));
        } catch (e) {
          reportRunError(e);
        } finally {
          await report?.write();
        }
      },
    )
    .command(
      "generate <ckpt>",
      "Sample text from a checkpoint written by 'fogc run --checkpoint DIR' (KV cache; WebGPU or CPU)",
      (y) =>
        y
          .positional("ckpt", { type: "string", demandOption: true, describe: "checkpoint file (.safetensors), or a --checkpoint directory (its newest)" })
          .option("prompt", { type: "string", demandOption: true, describe: "text to continue" })
          .option("tokens", { type: "number", demandOption: true, describe: "number of tokens to sample" })
          .option("temperature", { type: "number", default: 1, describe: "softmax temperature; 0 = greedy" })
          .option("top-k", { type: "number", default: 0, describe: "sample among the k most likely tokens (0 = all)" })
          .option("seed", { type: "number", default: 0, describe: "sampling seed" })
          .option("file", { type: "string", describe: "the .fog file, if it moved since training" })
          .option("backend", { choices: ["auto", "webgpu", "cpu"] as const, default: "auto" as const, describe: "where to run: WebGPU when an adapter is found (auto), or the CPU reference" })
          .option("cache", { type: "boolean", default: true, describe: "KV cache (--no-cache reruns the whole window per token)" }),
      async (argv) => {
        let started = false;
        let startedAt = 0;
        try {
          const r = await generate({
            checkpoint: argv.ckpt,
            prompt: argv.prompt,
            tokens: argv.tokens,
            temperature: argv.temperature,
            topK: argv["top-k"],
            seed: argv.seed,
            ...(argv.file ? { file: argv.file } : {}),
            backend: argv.backend,
            cache: argv.cache,
            onStart: (info) => {
              started = true;
              startedAt = performance.now();
              console.error(`fogc: ${info.backend}, ${info.cache ? `KV cache of ${info.context} positions` : `no cache (window of ${info.context})`}; ${info.precision}`);
              process.stdout.write(argv.prompt);
            },
            onText: (t) => process.stdout.write(t),
          });
          process.stdout.write("\n");
          const seconds = (performance.now() - startedAt) / 1000;
          console.error(`fogc: ${r.tokens.length} tokens in ${seconds.toFixed(2)} s (${(r.tokens.length / seconds).toFixed(1)} tokens/s)`);
        } catch (e) {
          if (started) process.stdout.write("\n");
          reportRunError(e);
        }
      },
    )
    .command(
      "export <file>",
      "Export a .fog model as a self-contained PyTorch package: module with fogc's parameter names, FP8 recipe, training loop",
      (y) =>
        y
          .positional("file", { type: "string", demandOption: true, describe: ".fog file" })
          .option("to", { choices: ["pytorch"] as const, demandOption: true, describe: "target framework" })
          .option("o", { alias: "out", type: "string", demandOption: true, describe: "directory to write the package into (replaced atomically)" })
          .option("model", { type: "string", describe: "model to export (default: the file's last model)" })
          .option("precision", { choices: PRECISIONS, describe: "override the recipe's mode" }),
      (argv) => {
        const r = check(argv.file, { ...(argv.model ? { model: argv.model } : {}), ...(argv.precision ? { precision: argv.precision } : {}) });
        if (printDiagnostics(r.diagnostics, r.files) || !r.model) {
          process.exitCode = 1;
          return;
        }
        try {
          const e = exportPytorch(r.model);
          for (const path of writePackage(argv.o, e.files)) console.log(`wrote ${path}`);
          console.log(`${r.model.name}: ${e.params.length} parameter tensors, shapes hash ${e.shapesHash}`);
        } catch (err) {
          if (!(err instanceof ExportError)) throw err;
          console.error(`fogc: ${err.message}`);
          process.exitCode = 1;
        }
      },
    )
    .command(
      "report <logs..>",
      "Draw training logs (fogc run --log) as one self-contained HTML report: loss, grad norm, lr, tokens/s, per-layer kurtosis, warnings; several logs overlaid",
      (y) =>
        y
          .positional("logs", { type: "string", array: true, demandOption: true, describe: ".jsonl logs (several: overlaid, one legend entry each)" })
          .option("o", { alias: "out", type: "string", describe: "the HTML file (default: one log → beside it, .jsonl → .html; several → report.html)" })
          .option("png", { type: "string", describe: "also write one PNG per panel and report.png (all panels) into this directory" })
          .option("png-scale", { type: "number", default: 2, describe: "PNG pixels per CSS pixel" })
          .option("label", { type: "string", array: true, describe: "legend names of the logs, one per log (default: their file names)" })
          .option("title", { type: "string", describe: "page title" }),
      async (argv) => {
        await reportCommand(argv.logs, {
          ...(argv.o ? { out: argv.o } : {}),
          ...(argv.png ? { png: argv.png } : {}),
          pngScale: argv["png-scale"],
          ...(argv.label ? { labels: argv.label } : {}),
          ...(argv.title ? { title: argv.title } : {}),
        });
      },
    )
    .demandCommand(1, "name a command: check, compile, run, generate, export or report (fogc --help lists them)")
    .strict()
    .recommendCommands()
    .help()
    .alias("h", "help")
    .version(false)
    .fail((msg, err) => {
      if (err) throw err;
      console.error(`fogc: ${msg}\nRun 'fogc --help' for usage.`);
      process.exit(1);
    })
    .parseAsync();
}

main().catch((e: unknown) => {
  const err = e as Error;
  if (process.env.FOGC_DEBUG) console.error(err.stack);
  console.error(`fogc: internal error: ${err.message}\nThis is a bug in fogc; rerun with FOGC_DEBUG=1 for details and report it with the command you ran.`);
  process.exit(2);
});
