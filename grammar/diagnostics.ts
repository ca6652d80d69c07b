// Source spans and diagnostics shared by every stage, and the one formatter that prints them
// as `file:line:col: severity: message`, the source line and a caret under the span.

/** A range in a source file; lines and columns are 1-based, offsets 0-based (end exclusive). */
export interface Span {
  file: string;
  line: number;
  col: number;
  endLine: number;
  endCol: number;
  offset: number;
  endOffset: number;
}

export type Severity = "error" | "warning";

export interface Diagnostic {
  severity: Severity;
  message: string;
  span: Span;
  /** Extra lines printed under the caret ("did you mean ...", "defined here ..."). */
  notes?: string[];
}

export function error(span: Span, message: string, notes?: string[]): Diagnostic {
  return notes ? { severity: "error", message, span, notes } : { severity: "error", message, span };
}

export function warning(span: Span, message: string, notes?: string[]): Diagnostic {
  return notes ? { severity: "warning", message, span, notes } : { severity: "warning", message, span };
}

/** A span covering `a` through `b` (same file). */
export function joinSpans(a: Span, b: Span): Span {
  return { ...a, endLine: b.endLine, endCol: b.endCol, endOffset: b.endOffset };
}

/** Span of a whole file's start, for errors that have no better place (missing import, ...). */
export function fileStartSpan(file: string): Span {
  return { file, line: 1, col: 1, endLine: 1, endCol: 2, offset: 0, endOffset: 1 };
}

/** Diagnostics sorted by file, then position; duplicates (same place, same message) dropped. */
export function sortDiagnostics(diags: readonly Diagnostic[]): Diagnostic[] {
  const seen = new Set<string>();
  const out: Diagnostic[] = [];
  for (const d of diags) {
    const key = `${d.span.file}:${d.span.offset}:${d.message}`;
    if (!seen.has(key)) {
      seen.add(key);
      out.push(d);
    }
  }
  return out.sort(
    (a, b) => a.span.file.localeCompare(b.span.file) || a.span.offset - b.span.offset,
  );
}

/**
 * Formats one diagnostic the way compilers do:
 *   examples/x.fog:3:9: error: unknown activation 'gelu2'
 *     3 |   activation = gelu2
 *       |                ^^^^^
 *       = did you mean 'gelu'?
 */
export function formatDiagnostic(d: Diagnostic, source?: string): string {
  const { span } = d;
  const head = `${span.file}:${span.line}:${span.col}: ${d.severity}: ${d.message}`;
  const lines = [head];
  const text = source?.split(/\r?\n/)[span.line - 1];
  if (text !== undefined) {
    const gutter = String(span.line).length;
    const pad = " ".repeat(gutter);
    const width =
      span.endLine === span.line ? Math.max(1, span.endCol - span.col) : Math.max(1, text.length - span.col + 1);
    lines.push(`${String(span.line)} | ${text}`);
    lines.push(`${pad} | ${" ".repeat(Math.max(0, span.col - 1))}${"^".repeat(width)}`);
    for (const n of d.notes ?? []) lines.push(`${pad} = ${n}`);
  } else {
    for (const n of d.notes ?? []) lines.push(`  = ${n}`);
  }
  return lines.join("\n");
}

/** The closest candidate by edit distance, if it is close enough to be a likely typo. */
export function didYouMean(name: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDist = Infinity;
  for (const c of candidates) {
    const d = editDistance(name.toLowerCase(), c.toLowerCase());
    if (d < bestDist) {
      best = c;
      bestDist = d;
    }
  }
  const limit = Math.max(1, Math.floor(name.length / 3));
  return best !== undefined && bestDist <= limit ? best : undefined;
}

/** Optimal-string-alignment distance: an adjacent transposition ("widht") costs one edit. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}
