// CST -> AST: `buildAst(cst, text, file)` takes the parser's concrete syntax tree and returns the
// `FogFile` of ast.ts (a Span on every node) plus the few errors decided here: malformed index
// labels and attributes at top level. Pieces made up by parser recovery are skipped, never trusted.
import type { CstNode, IToken } from "chevrotain";
import type {
  Arg,
  Attribute,
  Binary,
  Call,
  Expr,
  FogFile,
  Import,
  IndexLabel,
  Label,
  ListLit,
  Member,
  ModelDecl,
  NumberLit,
  PathLabel,
  Section,
  StringLit,
  Unary,
} from "./ast.js";
import { error, joinSpans, type Diagnostic, type Span } from "./diagnostics.js";
import { isRealToken, positionAt, STRING_ESCAPES, tokenSpan } from "./lexer.js";
import { fogParser } from "./parser.js";
import { INTEGER_TEXT, StringLiteral, WELL_FORMED_NUMBER } from "./tokens.js";

export const TOP_LEVEL_ATTRIBUTE_MESSAGE = "expected 'model', 'import' or a section at top level";

// ---- the children of each rule's CST node (labels as in parser.ts) -------------------------

type Tokens = IToken[] | undefined;
type Nodes = CstNode[] | undefined;

interface FileCtx { item?: Nodes }
interface ItemCtx { importDecl?: Nodes; modelDecl?: Nodes; member?: Nodes }
interface ImportCtx { Import?: Tokens; path?: Tokens }
interface ModelCtx { Model?: Tokens; name?: Tokens; Extends?: Tokens; base?: Tokens; body?: Nodes }
interface BodyCtx { LCurly?: Tokens; member?: Nodes; RCurly?: Tokens }
interface MemberCtx { section?: Nodes; attribute?: Nodes }
interface AttributeCtx { first?: Tokens; second?: Tokens; Equals?: Tokens; value?: Nodes; separator?: Tokens }
interface SectionCtx { type?: Tokens; label?: Nodes; body?: Nodes }
interface LabelCtx { path?: Nodes; indices?: Nodes }
interface PathCtx { parts?: Tokens; Dot?: Tokens }
interface IndicesCtx { ranges?: Nodes; Comma?: Tokens }
interface RangeCtx { fromMinus?: Tokens; from?: Tokens; DotDot?: Tokens; toMinus?: Tokens; to?: Tokens }
interface ExprCtx { additive?: Nodes }
interface ChainCtx { operands?: Nodes; ops?: Tokens }
interface UnaryCtx { Minus?: Tokens; operand?: Nodes; power?: Nodes }
interface PowerCtx { base?: Nodes; Caret?: Tokens; exponent?: Nodes }
interface PrimaryCtx { Number?: Tokens; String?: Tokens; list?: Nodes; parenthesized?: Nodes; reference?: Nodes }
interface ReferenceCtx { name?: Tokens; LParen?: Tokens; args?: Nodes; RParen?: Tokens }
interface ArgsCtx { items?: Nodes; Comma?: Tokens }
interface ArgCtx { name?: Tokens; Equals?: Tokens; value?: Nodes }
interface ListCtx { LBracket?: Tokens; items?: Nodes; Comma?: Tokens; RBracket?: Tokens }
interface ParenCtx { LParen?: Tokens; inner?: Nodes; RParen?: Tokens }

type TopItem = Import | ModelDecl | Member;

/** What a `{ ... }` body yields: its members, and where it ends (the `}`, or the last piece seen). */
interface Body {
  members: Member[];
  end: Span | undefined;
}

const BaseVisitor = fogParser.getBaseCstVisitorConstructor<void, unknown>();

/**
 * One visitor method per grammar rule. Each returns its AST piece, or undefined when the piece is
 * incomplete (recovered by the parser, whose error already says why).
 */
class AstBuilder extends BaseVisitor {
  fileName = "";
  diagnostics: Diagnostic[] = [];

  constructor() {
    super();
    this.validateVisitor();
  }

  // ---- helpers ----

  private node<T>(nodes: Nodes, i = 0): T | undefined {
    const n = nodes?.[i];
    return n === undefined ? undefined : (this.visit(n) as T | undefined);
  }

  /** Like `node`, but a node the parser had to recover is dropped whole. */
  private complete<T>(nodes: Nodes, i = 0): T | undefined {
    const n = nodes?.[i];
    return n === undefined || n.recoveredNode === true ? undefined : (this.visit(n) as T | undefined);
  }

  private tok(tokens: Tokens, i = 0): IToken | undefined {
    const t = tokens?.[i];
    return isRealToken(t) ? t : undefined;
  }

  private span(t: IToken): Span {
    return tokenSpan(t, this.fileName);
  }

  // ---- rules ----

  file(ctx: FileCtx): TopItem[] {
    const out: TopItem[] = [];
    for (const item of ctx.item ?? []) {
      const v = this.visit(item) as TopItem | undefined;
      if (v !== undefined) out.push(v);
    }
    return out;
  }

  item(ctx: ItemCtx): TopItem | undefined {
    return (
      this.complete<Import>(ctx.importDecl) ?? this.node<ModelDecl>(ctx.modelDecl) ?? this.node<Member>(ctx.member)
    );
  }

  importDecl(ctx: ImportCtx): Import | undefined {
    const kw = this.tok(ctx.Import);
    const path = this.tok(ctx.path);
    if (kw === undefined || path === undefined) return undefined;
    const pathSpan = this.span(path);
    return { kind: "import", path: unquote(path), pathSpan, span: joinSpans(this.span(kw), pathSpan) };
  }

  modelDecl(ctx: ModelCtx): ModelDecl | undefined {
    const kw = this.tok(ctx.Model);
    const name = this.tok(ctx.name);
    if (kw === undefined || name === undefined) return undefined;
    const body = this.node<Body>(ctx.body);
    const base = this.tok(ctx.base);
    const nameSpan = this.span(name);
    const model: ModelDecl = { kind: "model", name: name.image, nameSpan, members: body?.members ?? [], span: nameSpan };
    if (base !== undefined) {
      model.extends = base.image;
      model.extendsSpan = this.span(base);
    }
    model.span = joinSpans(this.span(kw), body?.end ?? model.extendsSpan ?? nameSpan);
    return model;
  }

  body(ctx: BodyCtx): Body {
    const members: Member[] = [];
    for (const m of ctx.member ?? []) {
      const v = this.visit(m) as Member | undefined;
      if (v !== undefined) members.push(v);
    }
    const close = this.tok(ctx.RCurly);
    const open = this.tok(ctx.LCurly);
    const end =
      close !== undefined
        ? this.span(close)
        : members.length > 0
          ? members[members.length - 1].span
          : open !== undefined
            ? this.span(open)
            : undefined;
    return { members, end };
  }

  member(ctx: MemberCtx): Member | undefined {
    return this.node<Section>(ctx.section) ?? this.complete<Attribute>(ctx.attribute);
  }

  attribute(ctx: AttributeCtx): Attribute | undefined {
    const first = this.tok(ctx.first);
    const second = ctx.second === undefined ? undefined : this.tok(ctx.second);
    const value = this.complete<Expr>(ctx.value);
    if (first === undefined || value === undefined || (ctx.second !== undefined && second === undefined)) {
      return undefined;
    }
    const key = second ?? first;
    const attr: Attribute = {
      kind: "attribute",
      key: key.image,
      keySpan: this.span(key),
      value,
      span: joinSpans(this.span(first), value.span),
    };
    if (second !== undefined) {
      attr.modifier = first.image;
      attr.modifierSpan = this.span(first);
    }
    return attr;
  }

  section(ctx: SectionCtx): Section | undefined {
    const type = this.tok(ctx.type);
    if (type === undefined) return undefined;
    const labels: Label[] = [];
    for (const l of ctx.label ?? []) {
      if (l.recoveredNode === true) continue;
      const v = this.visit(l) as Label | undefined;
      if (v !== undefined) labels.push(v);
    }
    const typeSpan = this.span(type);
    const body = this.node<Body>(ctx.body);
    const end = body?.end ?? (labels.length > 0 ? labels[labels.length - 1].span : typeSpan);
    return {
      kind: "section",
      type: type.image,
      typeSpan,
      labels,
      members: body?.members ?? [],
      span: joinSpans(typeSpan, end),
    };
  }

  label(ctx: LabelCtx): Label | undefined {
    return this.complete<PathLabel>(ctx.path) ?? this.complete<IndexLabel>(ctx.indices);
  }

  path(ctx: PathCtx): PathLabel | undefined {
    const parts = ctx.parts ?? [];
    if (parts.length === 0 || !parts.every(isRealToken)) return undefined;
    return {
      kind: "path",
      parts: parts.map((p) => p.image),
      span: joinSpans(this.span(parts[0]), this.span(parts[parts.length - 1])),
    };
  }

  indices(ctx: IndicesCtx): IndexLabel | undefined {
    const ranges: IndexLabel["ranges"] = [];
    for (const r of ctx.ranges ?? []) {
      if (r.recoveredNode === true) continue;
      const v = this.visit(r) as IndexLabel["ranges"][number] | undefined;
      if (v !== undefined) ranges.push(v);
    }
    if (ranges.length === 0) return undefined;
    return { kind: "indices", ranges, span: joinSpans(ranges[0].span, ranges[ranges.length - 1].span) };
  }

  range(ctx: RangeCtx): IndexLabel["ranges"][number] | undefined {
    const from = this.tok(ctx.from);
    if (from === undefined) return undefined;
    const fromMinus = this.tok(ctx.fromMinus);
    const fromValue = this.index(from, fromMinus);
    if (ctx.DotDot === undefined) {
      if (fromValue === undefined) return undefined;
      const span = joinSpans(this.span(fromMinus ?? from), this.span(from));
      return { from: fromValue, to: fromValue, span };
    }
    const to = this.tok(ctx.to);
    if (to === undefined) return undefined;
    const toMinus = this.tok(ctx.toMinus);
    const toValue = this.index(to, toMinus);
    if (fromValue === undefined || toValue === undefined) return undefined;
    return { from: fromValue, to: toValue, span: joinSpans(this.span(fromMinus ?? from), this.span(to)) };
  }

  /** An index label's number: plain digits only; anything else is reported here. */
  private index(n: IToken, minus: IToken | undefined): number | undefined {
    if (!WELL_FORMED_NUMBER.test(n.image)) return undefined; // the lexer reported it
    const value = Number(n.image);
    if (minus === undefined && INTEGER_TEXT.test(n.image) && Number.isSafeInteger(value)) return value;
    const written = `${minus === undefined ? "" : "-"}${n.image}`;
    const span = minus === undefined ? this.span(n) : joinSpans(this.span(minus), this.span(n));
    const why = INTEGER_TEXT.test(n.image) && minus === undefined ? "is too large" : "must be a non-negative integer";
    this.diagnostics.push(error(span, `index label ${why}, found '${written}'`));
    return undefined;
  }

  expr(ctx: ExprCtx): Expr | undefined {
    return this.complete<Expr>(ctx.additive);
  }

  additive(ctx: ChainCtx): Expr | undefined {
    return this.chain(ctx);
  }

  multiplicative(ctx: ChainCtx): Expr | undefined {
    return this.chain(ctx);
  }

  /** Left-associative `a op b op c`. */
  private chain(ctx: ChainCtx): Expr | undefined {
    const operands = ctx.operands ?? [];
    const ops = ctx.ops ?? [];
    if (operands.length !== ops.length + 1) return undefined;
    let left = this.complete<Expr>(operands, 0);
    for (let i = 0; i < ops.length && left !== undefined; i++) {
      const right = this.complete<Expr>(operands, i + 1);
      if (right === undefined) return undefined;
      const binary: Binary = {
        kind: "binary",
        op: ops[i].image as Binary["op"],
        left,
        right,
        span: joinSpans(left.span, right.span),
      };
      left = binary;
    }
    return left;
  }

  unary(ctx: UnaryCtx): Expr | undefined {
    if (ctx.power !== undefined) return this.complete<Expr>(ctx.power);
    const minus = this.tok(ctx.Minus);
    const operand = this.complete<Expr>(ctx.operand);
    if (minus === undefined || operand === undefined) return undefined;
    const u: Unary = { kind: "unary", op: "-", operand, span: joinSpans(this.span(minus), operand.span) };
    return u;
  }

  power(ctx: PowerCtx): Expr | undefined {
    const base = this.complete<Expr>(ctx.base);
    if (base === undefined || ctx.Caret === undefined) return base;
    const exponent = this.complete<Expr>(ctx.exponent);
    if (exponent === undefined) return undefined;
    const b: Binary = { kind: "binary", op: "^", left: base, right: exponent, span: joinSpans(base.span, exponent.span) };
    return b;
  }

  primary(ctx: PrimaryCtx): Expr | undefined {
    const num = this.tok(ctx.Number);
    if (num !== undefined) {
      const n: NumberLit = { kind: "number", value: Number(num.image), text: num.image, span: this.span(num) };
      return n;
    }
    const str = this.tok(ctx.String);
    if (str !== undefined) {
      const s: StringLit = { kind: "string", value: unquote(str), span: this.span(str) };
      return s;
    }
    return (
      this.complete<ListLit>(ctx.list) ?? this.complete<Expr>(ctx.parenthesized) ?? this.complete<Expr>(ctx.reference)
    );
  }

  reference(ctx: ReferenceCtx): Expr | undefined {
    const name = this.tok(ctx.name);
    if (name === undefined) return undefined;
    const nameSpan = this.span(name);
    if (ctx.LParen === undefined) return { kind: "ref", name: name.image, span: nameSpan };
    const args = ctx.args === undefined ? [] : this.complete<Arg[]>(ctx.args);
    if (args === undefined) return undefined;
    const close = this.tok(ctx.RParen) ?? this.tok(ctx.LParen);
    const end = close !== undefined ? this.span(close) : args.length > 0 ? args[args.length - 1].span : nameSpan;
    const call: Call = { kind: "call", callee: name.image, calleeSpan: nameSpan, args, span: joinSpans(nameSpan, end) };
    return call;
  }

  args(ctx: ArgsCtx): Arg[] | undefined {
    const out: Arg[] = [];
    for (let i = 0; i < (ctx.items ?? []).length; i++) {
      const a = this.complete<Arg>(ctx.items, i);
      if (a === undefined) return undefined;
      out.push(a);
    }
    return out;
  }

  arg(ctx: ArgCtx): Arg | undefined {
    const value = this.complete<Expr>(ctx.value);
    if (value === undefined) return undefined;
    if (ctx.name === undefined) return { value, span: value.span };
    const name = this.tok(ctx.name);
    if (name === undefined) return undefined;
    const nameSpan = this.span(name);
    return { name: name.image, nameSpan, value, span: joinSpans(nameSpan, value.span) };
  }

  list(ctx: ListCtx): ListLit | undefined {
    const items: Expr[] = [];
    for (let i = 0; i < (ctx.items ?? []).length; i++) {
      const e = this.complete<Expr>(ctx.items, i);
      if (e === undefined) return undefined;
      items.push(e);
    }
    const open = this.tok(ctx.LBracket);
    if (open === undefined) return undefined;
    const close = this.tok(ctx.RBracket);
    const end = close !== undefined ? this.span(close) : items.length > 0 ? items[items.length - 1].span : this.span(open);
    return { kind: "list", items, span: joinSpans(this.span(open), end) };
  }

  /** `(e)` is `e` itself, its span widened to the parentheses. */
  parenthesized(ctx: ParenCtx): Expr | undefined {
    const inner = this.complete<Expr>(ctx.inner);
    const open = this.tok(ctx.LParen);
    const close = this.tok(ctx.RParen);
    if (inner === undefined || open === undefined) return undefined;
    return { ...inner, span: joinSpans(this.span(open), close !== undefined ? this.span(close) : inner.span) };
  }
}

let builder: AstBuilder | undefined;

/** The visitor, built once (validateVisitor checks every rule has a method). */
function getBuilder(): AstBuilder {
  builder ??= new AstBuilder();
  return builder;
}

export interface BuildAstResult {
  ast: FogFile;
  diagnostics: Diagnostic[];
}

export function buildAst(cst: CstNode | undefined, text: string, file: string): BuildAstResult {
  const end = positionAt(text, text.length);
  const ast: FogFile = {
    kind: "file",
    file,
    imports: [],
    models: [],
    sections: [],
    span: { file, line: 1, col: 1, endLine: end.line, endCol: end.col, offset: 0, endOffset: text.length },
  };
  if (cst === undefined) return { ast, diagnostics: [] };
  const b = getBuilder();
  b.fileName = file;
  b.diagnostics = [];
  for (const item of b.visit(cst) as TopItem[]) {
    if (item.kind === "import") ast.imports.push(item);
    else if (item.kind === "model") ast.models.push(item);
    else if (item.kind === "section") ast.sections.push(item);
    else b.diagnostics.push(error(item.span, TOP_LEVEL_ATTRIBUTE_MESSAGE));
  }
  return { ast, diagnostics: b.diagnostics };
}

// ---- leaves ----------------------------------------------------------------------------------

/** A string token's value: quotes dropped, escapes replaced (unknown ones were reported). */
function unquote(t: IToken): string {
  let body = t.image.slice(1);
  const closed = t.tokenType === StringLiteral && body.endsWith('"');
  if (closed) body = body.slice(0, -1);
  let out = "";
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (c !== "\\") {
      out += c;
      continue;
    }
    const next = body[i + 1];
    if (next === undefined) break; // lone trailing backslash of an unterminated string
    out += Object.hasOwn(STRING_ESCAPES, next) ? STRING_ESCAPES[next] : next;
    i++;
  }
  return out;
}
