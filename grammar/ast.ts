// The syntax tree of a `.fog` file. It records what was written and where, nothing more:
// names are not resolved and values not checked here (compiler/check.ts does that).
import type { Span } from "./diagnostics.js";

export type Expr = NumberLit | StringLit | Ref | Call | Binary | Unary | ListLit;

export interface NumberLit {
  kind: "number";
  value: number;
  /** The literal as written ("1e-5"), for messages. */
  text: string;
  span: Span;
}

export interface StringLit {
  kind: "string";
  value: string;
  span: Span;
}

/** A bare name: a model property (`layers`), a constant (`e4m3`, `true`), a local tensor (`h`). */
export interface Ref {
  kind: "ref";
  name: string;
  span: Span;
}

/** `name(arg, key = arg, ...)`: a builtin op, a component, or a constructor (`delayed(...)`). */
export interface Call {
  kind: "call";
  callee: string;
  calleeSpan: Span;
  args: Arg[];
  span: Span;
}

export interface Arg {
  /** Present for named arguments (`eps = 1e-5`). */
  name?: string;
  nameSpan?: Span;
  value: Expr;
  span: Span;
}

export interface Binary {
  kind: "binary";
  op: "+" | "-" | "*" | "/" | "^";
  left: Expr;
  right: Expr;
  span: Span;
}

export interface Unary {
  kind: "unary";
  op: "-";
  operand: Expr;
  span: Span;
}

export interface ListLit {
  kind: "list";
  items: Expr[];
  span: Span;
}

/** `key = value`, or `probe key = value` (a modifier word before the key). */
export interface Attribute {
  kind: "attribute";
  key: string;
  keySpan: Span;
  modifier?: string;
  modifierSpan?: Span;
  value: Expr;
  span: Span;
}

/** A dotted name used as a section label: `attn.qk`. */
export interface PathLabel {
  kind: "path";
  parts: string[];
  span: Span;
}

/** Integers and ranges used as a section label: `0, 3..5`. Ranges are inclusive. */
export interface IndexLabel {
  kind: "indices";
  ranges: { from: number; to: number; span: Span }[];
  span: Span;
}

export type Label = PathLabel | IndexLabel;

/** `type label* { members }`: `attention attn { ... }`, `override layers 0..1 { ... }`. */
export interface Section {
  kind: "section";
  type: string;
  typeSpan: Span;
  labels: Label[];
  members: Member[];
  span: Span;
}

export type Member = Attribute | Section;

export interface Import {
  kind: "import";
  path: string;
  pathSpan: Span;
  span: Span;
}

export interface ModelDecl {
  kind: "model";
  name: string;
  nameSpan: Span;
  extends?: string;
  extendsSpan?: Span;
  members: Member[];
  span: Span;
}

/** A whole file: imports, models and top-level sections (precision recipes), in source order. */
export interface FogFile {
  kind: "file";
  file: string;
  imports: Import[];
  models: ModelDecl[];
  sections: Section[];
  span: Span;
}
