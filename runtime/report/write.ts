// `fogc report` / `writeReport`: training logs → one self-contained HTML file, and optionally one PNG
// per panel plus a combined one. Everything is read and drawn before anything is written, and every
// file is written under a temporary name and renamed, so a failure leaves no half-written output.
import { existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { reportHtml } from "./html.js";
import { distinctLabels, ReportError, readRunLog, type RunLog } from "./log.js";
import { buildPanels, combinedSpec, type Panel, type PanelOptions } from "./panels.js";
import { renderSvg, svgToPng } from "./render.js";

export interface ReportOptions extends PanelOptions {
  /** The HTML file (default: one log → beside it, `.jsonl` replaced by `.html`; several → `report.html`). */
  out?: string;
  /** Directory to write one PNG per panel into (`loss.png`, `kurtosis_qkv_input.png`, …) and `report.png` with all of them. */
  png?: string;
  /** Device pixels per CSS pixel of the PNGs (default 2). */
  pngScale?: number;
  /** Legend names of the logs, in order (default: their file names). */
  labels?: string[];
  /** Page title (default: `fogc report: <labels>`). */
  title?: string;
}

export interface WrittenPng {
  /** Panel id, or `report` for the combined figure. */
  panel: string;
  path: string;
  width: number;
  height: number;
}

export interface ReportResult {
  html: string;
  pngs: WrittenPng[];
  logs: RunLog[];
  panels: Panel[];
}

/** The default HTML path for these log files. */
export function defaultReportPath(logFiles: readonly string[]): string {
  if (logFiles.length !== 1) return "report.html";
  const f = logFiles[0];
  return join(dirname(f), `${basename(f).replace(/\.jsonl?$/i, "")}.html`);
}

function checkWritableFile(path: string, what: string): void {
  if (existsSync(path) && statSync(path).isDirectory()) throw new ReportError(`${what} ${path} is a directory`);
}

/** Writes each (path, bytes) under a temporary name first, then renames them all; on failure removes the temporaries. */
function writeAllAtomic(files: { path: string; data: string | Buffer }[]): void {
  const temps: string[] = [];
  try {
    for (const f of files) {
      const tmp = `${f.path}.tmp-${process.pid}-${temps.length}`;
      temps.push(tmp);
      writeFileSync(tmp, f.data);
    }
    files.forEach((f, i) => renameSync(temps[i], f.path));
  } catch (e) {
    for (const t of temps) rmSync(t, { force: true });
    throw new ReportError(`cannot write the report: ${(e as Error).message}`);
  }
}

/**
 * Reads one or more training logs (`fogc run --log`) and writes the report. Logs are paths, or logs
 * already read with `readRunLog`. Throws ReportError (file and line named) for bad input.
 */
export async function writeReport(logs: string | readonly (string | RunLog)[], options: ReportOptions = {}): Promise<ReportResult> {
  const list = typeof logs === "string" ? [logs] : logs;
  if (!list.length) throw new ReportError("name at least one log file (fogc run --log FILE.jsonl writes one)");
  if (options.labels && options.labels.length !== list.length) throw new ReportError(`${options.labels.length} labels for ${list.length} logs: give one per log`);
  const scale = options.pngScale ?? 2;
  if (!(Number.isFinite(scale) && scale > 0 && scale <= 8)) throw new ReportError(`the PNG scale must be in (0, 8], got ${scale}`);
  const read = distinctLabels(list.map((l, i) => (typeof l === "string" ? readRunLog(l, options.labels?.[i]) : options.labels ? { ...l, label: options.labels[i] } : l)));

  const out = resolve(options.out ?? defaultReportPath(read.map((l) => l.file)));
  checkWritableFile(out, "the report file");
  const pngDir = options.png === undefined ? undefined : resolve(options.png);
  if (pngDir && existsSync(pngDir) && !statSync(pngDir).isDirectory()) throw new ReportError(`--png ${options.png}: not a directory`);

  const title = options.title ?? `fogc report: ${read.map((l) => l.label).join(" vs ")}`;
  const panels = buildPanels(read, options);
  const svgs: string[] = [];
  for (const p of panels) svgs.push(await renderSvg(p.spec));
  const html = reportHtml(title, read, panels, svgs, new Date().toISOString());

  const pngs: (WrittenPng & { data: Buffer })[] = [];
  if (pngDir) {
    const figures = [...panels.map((p, i) => ({ panel: p.id, svg: svgs[i] })), { panel: "report", svg: await renderSvg(combinedSpec(panels, title)) }];
    for (const f of figures) pngs.push({ panel: f.panel, path: join(pngDir, `${f.panel}.png`), ...(await svgToPng(f.svg, scale)) });
    for (const p of pngs) checkWritableFile(p.path, "the PNG");
  }
  for (const dir of [dirname(out), ...(pngDir ? [pngDir] : [])]) {
    try {
      mkdirSync(dir, { recursive: true });
    } catch (e) {
      throw new ReportError(`cannot create the directory ${dir}: ${(e as Error).message}`);
    }
  }
  writeAllAtomic([...pngs.map((p) => ({ path: p.path, data: p.data })), { path: out, data: html }]);
  return { html: out, pngs: pngs.map(({ data: _data, ...p }) => p), logs: read, panels };
}
