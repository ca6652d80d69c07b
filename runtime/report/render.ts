// Drawing the panels: Vega-Lite → Vega → SVG headlessly in Node (no canvas, no browser), and SVG →
// PNG with resvg (prebuilt binaries). vega-lite's and vega's warnings are errors: a spec they
// would draw differently from what it says is a bug here, not something to ship silently.
// The libraries load on first use: `import "fogc"` and every other fogc command stay fast.
import type { VegaLiteSpec } from "./panels.js";

type Vega = typeof import("vega");
let libraries: Promise<{ vega: Vega; compile: typeof import("vega-lite").compile }> | undefined;
const loadCharts = (): NonNullable<typeof libraries> =>
  (libraries ??= Promise.all([import("vega"), import("vega-lite")]).then(([vega, vl]) => ({ vega, compile: vl.compile })));

const CONFIG = {
  font: "DejaVu Sans, Helvetica, Arial, sans-serif",
  background: "white",
  padding: 8,
  view: { stroke: "#ddd" },
  axis: { labelFontSize: 10, titleFontSize: 11, gridColor: "#eee" },
  legend: { labelFontSize: 10, labelLimit: 220 },
  title: { fontSize: 13 },
};

function strictLogger(vega: Vega, sink: string[]): ReturnType<Vega["logger"]> {
  return vega.logger(vega.Warn, "warn", (_method, level, args) => {
    if (level === "WARN" || level === "ERROR") sink.push(args.map(String).join(" "));
  });
}

/** Renders a Vega-Lite spec (without `$schema`/`config`) to an SVG document. */
export async function renderSvg(spec: VegaLiteSpec): Promise<string> {
  const { vega, compile } = await loadCharts();
  const problems: string[] = [];
  const top = { $schema: "https://vega.github.io/schema/vega-lite/v6.json", config: CONFIG, ...spec };
  const compiled = compile(top as Parameters<typeof compile>[0], { logger: strictLogger(vega, problems) });
  const view = new vega.View(vega.parse(compiled.spec), { renderer: "none", logger: strictLogger(vega, problems) });
  try {
    const svg = await view.toSVG();
    if (problems.length) throw new Error(`report chart: ${problems.join("; ")}`);
    return svg;
  } finally {
    view.finalize();
  }
}

export interface Png {
  data: Buffer;
  width: number;
  height: number;
}

/** Rasterises an SVG at `scale` device pixels per CSS pixel. */
export async function svgToPng(svg: string, scale: number): Promise<Png> {
  const { Resvg } = await import("@resvg/resvg-js");
  const rendered = new Resvg(svg, {
    fitTo: { mode: "zoom", value: scale },
    background: "white",
    font: { loadSystemFonts: true, defaultFontFamily: "DejaVu Sans", sansSerifFamily: "DejaVu Sans" },
  }).render();
  return { data: rendered.asPng(), width: rendered.width, height: rendered.height };
}
