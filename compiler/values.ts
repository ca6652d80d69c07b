// Evaluates `.fog` expressions to values: numbers (with arithmetic and math functions over model
// properties), symbols (`e4m3`, `true`, `none`), strings, lists and constructor calls
// (`delayed(history = 16)`), which check.ts then decodes against what each key expects.
import type { Expr } from "../grammar/ast.js";
import { type Diagnostic, type Span, error } from "../grammar/diagnostics.js";
import { hint } from "./resolve.js";

export type Value =
  | { kind: "num"; value: number; span: Span }
  | { kind: "str"; value: string; span: Span }
  | { kind: "sym"; name: string; span: Span }
  | { kind: "list"; items: Value[]; span: Span }
  | { kind: "call"; name: string; calleeSpan: Span; args: Value[]; named: Map<string, NamedArg>; span: Span };

export interface NamedArg {
  value: Value;
  nameSpan: Span;
}

/** Names a numeric expression may refer to (model properties), resolved lazily. */
export interface Scope {
  lookup(name: string, span: Span): number | undefined;
  names(): Iterable<string>;
}

const MATH: Record<string, (...xs: number[]) => number> = {
  sqrt: Math.sqrt,
  exp: Math.exp,
  log: Math.log,
  log2: Math.log2,
  abs: Math.abs,
  floor: Math.floor,
  ceil: Math.ceil,
  round: Math.round,
  min: Math.min,
  max: Math.max,
};

export function describe(v: Value): string {
  switch (v.kind) {
    case "num":
      return `the number ${v.value}`;
    case "str":
      return `the string "${v.value}"`;
    case "sym":
      return `'${v.name}'`;
    case "list":
      return "a list";
    case "call":
      return `'${v.name}(...)'`;
  }
}

export function evaluate(expr: Expr, scope: Scope, diags: Diagnostic[]): Value | undefined {
  switch (expr.kind) {
    case "number":
      return { kind: "num", value: expr.value, span: expr.span };
    case "string":
      return { kind: "str", value: expr.value, span: expr.span };
    case "ref": {
      const v = scope.lookup(expr.name, expr.span);
      return v === undefined ? { kind: "sym", name: expr.name, span: expr.span } : { kind: "num", value: v, span: expr.span };
    }
    case "list": {
      const items: Value[] = [];
      for (const it of expr.items) {
        const v = evaluate(it, scope, diags);
        if (!v) return undefined;
        items.push(v);
      }
      return { kind: "list", items, span: expr.span };
    }
    case "unary": {
      const v = number(expr.operand, scope, diags);
      return v === undefined ? undefined : { kind: "num", value: -v, span: expr.span };
    }
    case "binary": {
      const a = number(expr.left, scope, diags);
      const b = number(expr.right, scope, diags);
      // NaN comes from a property whose error is already reported: say nothing more.
      if (a === undefined || b === undefined || Number.isNaN(a) || Number.isNaN(b)) return undefined;
      const value =
        expr.op === "+" ? a + b : expr.op === "-" ? a - b : expr.op === "*" ? a * b : expr.op === "/" ? a / b : a ** b;
      if (!Number.isFinite(value)) {
        diags.push(error(expr.span, `this expression is not a finite number (${value})`));
        return undefined;
      }
      return { kind: "num", value, span: expr.span };
    }
    case "call": {
      const args: Value[] = [];
      const named = new Map<string, NamedArg>();
      for (const a of expr.args) {
        const v = evaluate(a.value, scope, diags);
        if (!v) return undefined;
        if (a.name !== undefined) {
          if (named.has(a.name)) {
            diags.push(error(a.nameSpan ?? a.span, `argument '${a.name}' is given twice`));
            return undefined;
          }
          named.set(a.name, { value: v, nameSpan: a.nameSpan ?? a.span });
        } else args.push(v);
      }
      const fn = MATH[expr.callee];
      if (fn && named.size === 0 && args.every((a) => a.kind === "num")) {
        const value = fn(...args.map((a) => (a as { value: number }).value));
        if (!Number.isFinite(value)) {
          diags.push(error(expr.span, `${expr.callee}(...) is not a finite number here (${value})`));
          return undefined;
        }
        return { kind: "num", value, span: expr.span };
      }
      return { kind: "call", name: expr.callee, calleeSpan: expr.calleeSpan, args, named, span: expr.span };
    }
  }
}

/** Evaluates an expression that must be a number; reports what it was otherwise. */
export function number(expr: Expr, scope: Scope, diags: Diagnostic[]): number | undefined {
  const v = evaluate(expr, scope, diags);
  if (!v) return undefined;
  if (v.kind === "num") return v.value;
  if (v.kind === "sym") diags.push(error(v.span, `unknown name '${v.name}'`, hint(v.name, [...scope.names(), ...Object.keys(MATH)])));
  else diags.push(error(v.span, `expected a number, found ${describe(v)}`));
  return undefined;
}
