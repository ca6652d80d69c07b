// Typed reading of key/value entries (a section's attributes or a call's named arguments) with
// positioned errors. Keys a decoder never asks for are reported as unknown, with "did you mean".
import { type Diagnostic, type Span, error } from "../grammar/diagnostics.js";
import { hint } from "./resolve.js";
import { type Value, describe } from "./values.js";

export interface Entry {
  value: Value;
  keySpan: Span;
}

export interface NumOpts {
  int?: boolean;
  min?: number;
  max?: number;
  /** min is exclusive (> rather than ≥). */
  above?: number;
}

export class Fields {
  private readonly asked = new Set<string>();

  constructor(
    /** What is being read, for messages: "attention 'attn'", "delayed(...)". */
    readonly what: string,
    readonly entries: Map<string, Entry>,
    readonly diags: Diagnostic[],
    /** Where to point when a required key is missing. */
    readonly span: Span,
  ) {}

  static ofCall(v: Extract<Value, { kind: "call" }>, diags: Diagnostic[]): Fields {
    const entries = new Map<string, Entry>();
    for (const [k, a] of v.named) entries.set(k, { value: a.value, keySpan: a.nameSpan });
    if (v.args.length) diags.push(error(v.args[0].span, `${v.name}(...) takes named arguments only (write ${v.name}(name = value))`));
    return new Fields(`${v.name}(...)`, entries, diags, v.calleeSpan);
  }

  has(key: string): boolean {
    this.asked.add(key);
    return this.entries.has(key);
  }

  value(key: string): Value | undefined {
    this.asked.add(key);
    return this.entries.get(key)?.value;
  }

  num(key: string, fallback: number | undefined, opts: NumOpts = {}): number {
    const v = this.value(key);
    if (v === undefined) {
      if (fallback === undefined) {
        this.diags.push(error(this.span, `${this.what} needs '${key}'`));
        return NaN;
      }
      return fallback;
    }
    return checkNum(v, key, opts, this.diags) ?? fallback ?? NaN;
  }

  /** A symbol from a closed set (an enum such as `e4m3 | e5m2`). */
  sym<T extends string>(key: string, allowed: readonly T[], fallback: T): T {
    const v = this.value(key);
    if (v === undefined) return fallback;
    return checkSym(v, key, allowed, this.diags) ?? fallback;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.value(key);
    if (v === undefined) return fallback;
    const s = checkSym(v, key, ["true", "false"] as const, this.diags);
    return s === undefined ? fallback : s === "true";
  }

  /** Reports every entry no decoder asked for. Call once, after reading. */
  done(): void {
    for (const [k, e] of this.entries) {
      if (!this.asked.has(k)) {
        const known = [...this.asked].sort();
        this.diags.push(
          error(e.keySpan, `unknown key '${k}' in ${this.what}`, hint(k, known) ?? [`known keys: ${known.join(", ")}`]),
        );
      }
    }
  }
}

export function checkNum(v: Value, key: string, opts: NumOpts, diags: Diagnostic[]): number | undefined {
  if (v.kind !== "num") {
    diags.push(error(v.span, `'${key}' must be a number, found ${describe(v)}`));
    return undefined;
  }
  const x = v.value;
  if (opts.int && !Number.isInteger(x)) diags.push(error(v.span, `'${key}' must be a whole number, found ${x}`));
  else if (opts.min !== undefined && x < opts.min) diags.push(error(v.span, `'${key}' must be at least ${opts.min}, found ${x}`));
  else if (opts.above !== undefined && x <= opts.above) diags.push(error(v.span, `'${key}' must be greater than ${opts.above}, found ${x}`));
  else if (opts.max !== undefined && x > opts.max) diags.push(error(v.span, `'${key}' must be at most ${opts.max}, found ${x}`));
  else return x;
  return undefined;
}

export function checkSym<T extends string>(v: Value, key: string, allowed: readonly T[], diags: Diagnostic[]): T | undefined {
  const name = v.kind === "sym" ? v.name : v.kind === "call" && v.args.length === 0 && v.named.size === 0 ? v.name : undefined;
  if (name !== undefined && (allowed as readonly string[]).includes(name)) return name as T;
  const notes = name !== undefined ? hint(name, allowed) : undefined;
  const found = name !== undefined ? `'${name}'` : describe(v);
  diags.push(error(v.span, `'${key}' must be one of ${allowed.join(", ")}; found ${found}`, notes));
  return undefined;
}
