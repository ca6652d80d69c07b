// `fogc report LOG.jsonl…` and `fogc run --report [FILE]`: the command-line side of runtime/report
// (printing, exit codes). A user's bad input is one `fogc: …` line and exit code 1.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { ReportError } from "../runtime/report/log.js";
import { defaultReportPath, type ReportOptions, writeReport } from "../runtime/report/write.js";

/** Writes a report and prints what it wrote; a ReportError is printed and sets exit code 1. */
export async function reportCommand(logs: string[], options: ReportOptions): Promise<void> {
  try {
    const r = await writeReport(logs, options);
    const count = (n: number, what: string): string => `${n} ${what}${n === 1 ? "" : "s"}`;
    const records = r.logs.reduce((n, l) => n + l.points.length, 0);
    const warnings = r.logs.reduce((n, l) => n + l.warnings.length, 0);
    console.log(`wrote ${r.html} (${count(r.panels.length, "panel")}, ${count(records, "log record")}, ${count(warnings, "kurtosis warning")})`);
    if (r.pngs.length) console.log(`wrote ${r.pngs.length} PNGs to ${options.png} (${r.pngs.map((p) => `${p.panel}.png`).join(", ")})`);
  } catch (e) {
    if (!(e instanceof ReportError)) throw e;
    console.error(`fogc: ${e.message}`);
    process.exitCode = 1;
  }
}

/**
 * `fogc run --report [FILE]`: the run logs to `--log` if given, else to a temporary log that is
 * removed once the report (which embeds all of it) is written. FILE defaults to the log's path with
 * `.html` for `.jsonl`, or, without `--log`, to `<the .fog file's name>.html` in the current directory.
 * The report is written however the run ends (a diverged run is the one most worth looking at).
 */
export class RunReport {
  readonly log: string;
  private readonly out: string;
  private readonly tempDir?: string;
  private readonly label: string;

  constructor(report: string, log: string | undefined, fogFile: string) {
    if (log) this.log = log;
    else {
      this.tempDir = mkdtempSync(join(tmpdir(), "fogc-run-"));
      this.log = join(this.tempDir, "run.jsonl");
    }
    this.label = basename(fogFile).replace(/\.fog$/i, "");
    this.out = report || (log ? defaultReportPath([log]) : `${this.label}.html`);
  }

  async write(): Promise<void> {
    try {
      if (!existsSync(this.log)) {
        console.error("fogc: no report written: the run logged no step");
        process.exitCode = 1;
        return;
      }
      await reportCommand([this.log], { out: this.out, ...(this.tempDir ? { labels: [this.label] } : {}) });
    } finally {
      if (this.tempDir) rmSync(this.tempDir, { recursive: true, force: true });
    }
  }
}
