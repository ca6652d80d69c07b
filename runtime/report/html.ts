// The report page: one self-contained HTML file (inline CSS, inline SVG, the parsed logs as JSON in
// a <script type="application/json">), viewable offline; no script runs in it.
import type { RunLog } from "./log.js";
import type { Panel } from "./panels.js";

/** The id of the <script type="application/json"> element that carries the parsed logs. */
export const DATA_ELEMENT_ID = "fogc-report-data";

export interface EmbeddedData {
  generated: string;
  logs: RunLog[];
  panels: { id: string; title: string }[];
}

function esc(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function num(v: number | null | undefined, digits = 4): string {
  if (v === undefined) return "—";
  return v === null || !Number.isFinite(v) ? "non-finite" : Number(v.toPrecision(digits)).toString();
}

const CAPTIONS: Record<string, string> = {
  loss: "Training loss at each logged step and validation loss at each evaluation. Dashed red rules: kurtosis warnings (the first probe of the step named, with its value; +N counts the others).",
  grad_norm: "Global gradient norm before clipping (log scale).",
  lr: "Learning rate of the step (the schedule).",
  tokens_per_s: "Training throughput over the steps since the previous log record.",
};

function caption(p: Panel): string {
  const base = CAPTIONS[p.id] ?? "Kurtosis of the tensor per layer (log scale; 3 is Gaussian), on probe steps. Dashed red rules: kurtosis warnings of this tensor (layer, value).";
  const gaps = p.rows.some((r) => r.value === null) ? " Red crosses on the step axis: non-finite values, drawn as gaps in their line." : "";
  return base + gaps;
}

function runRows(logs: RunLog[]): string {
  return logs
    .map((l) => {
      const first = l.runs[0];
      const last = l.runs.at(-1);
      const lastPoint = l.points.at(-1)!;
      const vals = l.points.map((p) => p.val_loss).filter((v): v is number => typeof v === "number");
      const resumed = l.runs.filter((r) => r.start_step > 0).map((r) => r.start_step);
      const nonFinite = l.points.filter((p) => p.loss === null).length;
      const cells = [
        esc(l.label),
        first ? esc(first.model) : "—",
        first ? esc(`${first.recipe} (${first.precision})`) : "—",
        first ? esc(first.backend) : "—",
        `${lastPoint.step}${last ? ` / ${last.steps}` : ""}`,
        first ? `${first.batch} × ${first.seq_len}` : "—",
        first ? first.params.toLocaleString("en-US") : "—",
        first ? String(first.seed) : "—",
        num(lastPoint.loss),
        vals.length ? num(vals.at(-1)) : "—",
        String(l.warnings.length),
        resumed.length ? resumed.join(", ") : "—",
        nonFinite ? `<span class="bad">${nonFinite}</span>` : "0",
      ];
      return `<tr><td title="${esc(l.file)}">${cells[0]}</td>${cells
        .slice(1)
        .map((c) => `<td>${c}</td>`)
        .join("")}</tr>`;
    })
    .join("\n");
}

function warningTable(logs: RunLog[]): string {
  const rows = logs.flatMap((l) =>
    l.warnings.map(
      (w) =>
        `<tr>${[l.label, String(w.step), w.layer === null ? "—" : String(w.layer), w.probe, num(w.value), num(w.baseline), num(w.threshold), w.reason, String(w.since), w.action ?? "—"]
          .map((c) => `<td>${esc(c)}</td>`)
          .join("")}</tr>`,
    ),
  );
  if (!rows.length) return `<p class="note">No kurtosis warnings in ${logs.length > 1 ? "these logs" : "this log"}.</p>`;
  return `<table><thead><tr><th>log</th><th>step</th><th>layer</th><th>tensor</th><th>kurtosis</th><th>baseline</th><th>band top</th><th>reason</th><th>out of band since</th><th>action</th></tr></thead><tbody>
${rows.join("\n")}
</tbody></table>`;
}

export function reportHtml(title: string, logs: RunLog[], panels: Panel[], svgs: string[], generated: string): string {
  const data: EmbeddedData = { generated, logs, panels: panels.map((p) => ({ id: p.id, title: p.title })) };
  // Inside <script>, only "</" and "<!--" can end or derail the element: escape every "<".
  const json = JSON.stringify(data).replace(/</g, "\\u003c");
  const figure = (p: Panel, i: number): string =>
    `<figure id="panel-${p.id}" data-panel="${p.id}">${svgs[i]}<figcaption>${esc(caption(p))}</figcaption></figure>`;
  const wide = panels.map((p, i) => [p, i] as const).filter(([p]) => !p.id.startsWith("kurtosis_"));
  const kurt = panels.map((p, i) => [p, i] as const).filter(([p]) => p.id.startsWith("kurtosis_"));
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="fogc report">
<title>${esc(title)}</title>
<style>
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 24px; color: #222; max-width: 1500px; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 8px; }
.note { color: #666; font-size: 13px; } .bad { color: #b00020; font-weight: bold; }
table { border-collapse: collapse; font-size: 12px; } th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
th { background: #f4f4f4; } td { font-variant-numeric: tabular-nums; }
.panels { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; border: 1px solid #eee; padding: 4px; } figcaption { font-size: 12px; color: #555; max-width: 640px; padding: 2px 6px 6px; }
svg { display: block; max-width: 100%; height: auto; }
</style>
</head>
<body>
<h1>${esc(title)}</h1>
<p class="note">Generated ${esc(generated)} by <code>fogc report</code> from ${logs.map((l) => `<code>${esc(l.file)}</code>`).join(", ")}.</p>
<h2>Runs</h2>
<table><thead><tr><th>log</th><th>model</th><th>recipe (mode)</th><th>backend</th><th>last step / planned</th><th>batch × seq</th><th>parameters</th><th>seed</th><th>last loss</th><th>last val loss</th><th>warnings</th><th>resumed at</th><th>non-finite losses</th></tr></thead><tbody>
${runRows(logs)}
</tbody></table>
${logs.some((l) => !l.runs.length) ? `<p class="note">A log without a "run" line (written before fogc logged one, or by train.py) shows — for what it does not record.</p>` : ""}
<h2>Kurtosis warnings</h2>
${warningTable(logs)}
<h2>Training</h2>
<div class="panels">
${wide.map(([p, i]) => figure(p, i)).join("\n")}
</div>
${kurt.length ? `<h2>Kurtosis per layer</h2>\n<div class="panels">\n${kurt.map(([p, i]) => figure(p, i)).join("\n")}\n</div>` : `<p class="note">No kurtosis in ${logs.length > 1 ? "these logs" : "this log"} (probes off, or a backend without probes).</p>`}
<script type="application/json" id="${DATA_ELEMENT_ID}">${json}</script>
</body>
</html>
`;
}
