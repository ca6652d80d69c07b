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
import { fmtCount, formatSummary } from "../compiler/report.js";
import type { SourceFile } from "../compiler/resolve.js";

const PRECISIONS = ["bf16", "fp8", "fp8dpa"] as const;

function printDiagnostics(diags: Diagnostic[], files: Map<string, SourceFile>): boolean {
  for (const d of diags) console.error(formatDiagnostic(d, files.get(d.span.file)?.text) + "\n");
  const errors = diags.filter((d) => d.severity === "error").length;
  if (errors) console.error(`${errors} error${errors > 1 ? "s" : ""}`);
  return errors > 0;
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
          .option("emit", { choices: ["summary", "ir"] as const, default: "summary" as const, describe: "what to print" }),
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
        const { model, forward, stats } = r.program;
        const ir = printGraph(forward);
        if (argv.emit === "ir") process.stdout.write(ir);
        else console.log(formatSummary(model, stats));
        if (argv.o) {
          mkdirSync(argv.o, { recursive: true });
          const path = join(argv.o, `${model.name}.ir`);
          writeAtomic(path, ir);
          console.log(`wrote ${path} (${forward.nodes.length} nodes, ${fmtCount(stats.params)} parameters)`);
        }
      },
    )
    .demandCommand(1, "name a command: check or compile (fogc --help lists them)")
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
