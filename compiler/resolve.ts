// Loads a `.fog` file and the files it imports, picks the model to compile and flattens its
// `extends` chain into one member list (child entries override the parent's, key by key).
import { dirname, resolve as resolvePath } from "node:path";
import { readFileSync } from "node:fs";
import type { FogFile, Member, ModelDecl, Section } from "../grammar/ast.js";
import { parseFog } from "../grammar/index.js";
import { type Diagnostic, type Span, didYouMean, error, fileStartSpan } from "../grammar/diagnostics.js";

export interface SourceFile {
  path: string;
  text: string;
  ast: FogFile;
}

export interface ResolvedModel {
  decl: ModelDecl;
  /** The members after applying every `extends`, each keeping the span where it was written. */
  members: Member[];
}

export interface Resolved {
  files: Map<string, SourceFile>;
  model?: ResolvedModel;
  /** Top-level `precision NAME { }` recipes of every loaded file. */
  recipes: Map<string, Section>;
  diagnostics: Diagnostic[];
}

export interface ResolveOptions {
  /** Reads a file; tests pass an in-memory map. Defaults to the file system. */
  readFile?: (path: string) => string;
  /** Which model of the entry file to compile; defaults to its last model. */
  model?: string;
  /** Parsed files by path and text, reused across calls (fuzzing checks thousands of variants). */
  parseCache?: Map<string, ReturnType<typeof parseFog>>;
}

export function resolve(entry: string, options: ResolveOptions = {}): Resolved {
  const readFile = options.readFile ?? ((p: string) => readFileSync(p, "utf8"));
  const files = new Map<string, SourceFile>();
  const diagnostics: Diagnostic[] = [];
  const models = new Map<string, ModelDecl>();
  const recipes = new Map<string, Section>();

  const load = (path: string, from?: Span): SourceFile | undefined => {
    const existing = files.get(path);
    if (existing) return existing;
    let text: string;
    try {
      text = readFile(path);
    } catch (e) {
      const why = (e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message;
      diagnostics.push(error(from ?? fileStartSpan(path), `cannot read '${path}': ${why}`));
      return undefined;
    }
    const cacheKey = `${path}\0${text}`;
    const parsed = options.parseCache?.get(cacheKey) ?? parseFog(text, path);
    options.parseCache?.set(cacheKey, parsed);
    const { ast, diagnostics: parseDiags } = parsed;
    const file: SourceFile = { path, text, ast };
    files.set(path, file);
    diagnostics.push(...parseDiags);
    for (const imp of ast.imports) load(resolvePath(dirname(path), imp.path), imp.pathSpan);
    for (const m of ast.models) {
      const prev = models.get(m.name);
      if (prev && prev !== m)
        diagnostics.push(error(m.nameSpan, `model '${m.name}' is already defined at ${where(prev.nameSpan)}`));
      else models.set(m.name, m);
    }
    for (const s of ast.sections) {
      if (s.type !== "precision") {
        diagnostics.push(error(s.typeSpan, `unknown top-level section '${s.type}'`, hint(s.type, ["precision"])));
        continue;
      }
      const name = s.labels[0]?.kind === "path" ? s.labels[0].parts.join(".") : undefined;
      if (!name || s.labels.length !== 1) {
        diagnostics.push(error(s.typeSpan, "a precision recipe needs one name: `precision NAME { ... }`"));
        continue;
      }
      const prev = recipes.get(name);
      if (prev && prev !== s) diagnostics.push(error(s.labels[0].span, `precision recipe '${name}' is already defined at ${where(prev.span)}`));
      else recipes.set(name, s);
    }
    return file;
  };

  const entryFile = load(entry);
  if (!entryFile) return { files, recipes, diagnostics };

  const own = entryFile.ast.models;
  let decl: ModelDecl | undefined;
  if (options.model) {
    decl = models.get(options.model);
    if (!decl) {
      const d = error(fileStartSpan(entry), `no model named '${options.model}' in ${entry} or its imports`, hint(options.model, models.keys()));
      diagnostics.push(d);
    }
  } else {
    decl = own[own.length - 1];
    if (!decl) diagnostics.push(error(fileStartSpan(entry), `${entry} defines no model (write \`model NAME { ... }\`)`));
  }
  if (!decl) return { files, recipes, diagnostics };

  // Flatten the extends chain, root first.
  const chain: ModelDecl[] = [];
  for (let m: ModelDecl | undefined = decl; m; ) {
    if (chain.includes(m)) {
      diagnostics.push(error(m.nameSpan, `model '${m.name}' extends itself (through ${chain.map((c) => c.name).join(" → ")})`));
      break;
    }
    chain.unshift(m);
    if (!m.extends) break;
    const parent = models.get(m.extends);
    if (!parent) {
      diagnostics.push(error(m.extendsSpan ?? m.nameSpan, `unknown model '${m.extends}'`, hint(m.extends, models.keys())));
      break;
    }
    m = parent;
  }
  let members: Member[] = [];
  for (const m of chain) {
    reportDuplicates(m.members, diagnostics);
    members = mergeMembers(members, m.members);
  }
  return { files, model: { decl, members }, recipes, diagnostics };
}

function sectionKey(s: Section): string {
  const labels = s.labels.map((l) => (l.kind === "path" ? l.parts.join(".") : l.ranges.map((r) => `${r.from}..${r.to}`).join(",")));
  return [s.type, ...labels].join(" ");
}

/** Child members override the parent's: attributes by key, sections merged by type and labels;
 *  a `block` section is replaced whole (its statements are a sequence, not a map). */
export function mergeMembers(parent: Member[], child: Member[]): Member[] {
  const out = [...parent];
  for (const m of child) {
    const i = out.findIndex((p) =>
      m.kind === "attribute"
        ? p.kind === "attribute" && p.key === m.key
        : p.kind === "section" && sectionKey(p) === sectionKey(m),
    );
    if (i < 0) out.push(m);
    else if (m.kind === "section" && m.type !== "block" && m.type !== "override") {
      const p = out[i] as Section;
      out[i] = { ...m, members: mergeMembers(p.members, m.members) };
    } else out[i] = m;
  }
  return out;
}

/** Within one model, a key or section written twice is a mistake (inside `block`, reassigning is not). */
function reportDuplicates(members: Member[], diagnostics: Diagnostic[]): void {
  const seen = new Map<string, Span>();
  for (const m of members) {
    const key = m.kind === "attribute" ? m.key : sectionKey(m);
    const span = m.kind === "attribute" ? m.keySpan : m.typeSpan;
    const prev = seen.get(key);
    if (prev) diagnostics.push(error(span, `'${key}' is already set at ${where(prev)}`));
    else seen.set(key, span);
    if (m.kind === "section" && m.type !== "block") reportDuplicates(m.members, diagnostics);
  }
}

function where(span: Span): string {
  return `${span.file}:${span.line}:${span.col}`;
}

export function hint(name: string, candidates: Iterable<string>): string[] | undefined {
  const s = didYouMean(name, candidates);
  return s ? [`did you mean '${s}'?`] : undefined;
}
