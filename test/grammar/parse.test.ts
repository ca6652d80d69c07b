// Valid `.fog` text through parseFog: the 390M example parses clean into the expected tree, with
// spans that point at the right text; plus precedence, labels, literals and lexing details.
import { describe, expect, it } from "vitest";
import {
  parseFog,
  type Attribute,
  type Call,
  type Expr,
  type FogFile,
  type Member,
  type Section,
  type Span,
} from "../../grammar/index.js";
import { EXAMPLE } from "./example.js";

function parseClean(text: string): FogFile {
  const { ast, diagnostics } = parseFog(text, "t.fog");
  expect(diagnostics).toEqual([]);
  return ast;
}

/** An expression as compact text, fully parenthesized: `(a + (b * c))`, `f(x, k=1)`. */
function show(e: Expr): string {
  switch (e.kind) {
    case "number":
      return e.text;
    case "string":
      return JSON.stringify(e.value);
    case "ref":
      return e.name;
    case "call":
      return `${e.callee}(${e.args.map((a) => (a.name !== undefined ? `${a.name}=` : "") + show(a.value)).join(", ")})`;
    case "binary":
      return `(${show(e.left)} ${e.op} ${show(e.right)})`;
    case "unary":
      return `(-${show(e.operand)})`;
    case "list":
      return `[${e.items.map(show).join(", ")}]`;
  }
}

function member(members: Member[], name: string): Member {
  const m = members.find((x) => (x.kind === "attribute" ? x.key : x.type) === name);
  if (m === undefined) throw new Error(`no member ${name}`);
  return m;
}

function attr(members: Member[], key: string): Attribute {
  const m = member(members, key);
  if (m.kind !== "attribute") throw new Error(`${key} is a section`);
  return m;
}

function section(members: Member[], type: string): Section {
  const m = member(members, type);
  if (m.kind !== "section") throw new Error(`${type} is an attribute`);
  return m;
}

/** The source text a span covers, and where it starts. */
function at(text: string, span: Span): string {
  return `${span.line}:${span.col}-${span.endLine}:${span.endCol} ${text.slice(span.offset, span.endOffset)}`;
}

function value(text: string, key = "x"): string {
  const ast = parseClean(`model m { ${key} = ${text} }`);
  return show(attr(ast.models[0].members, key).value);
}

describe("the FOG-max example", () => {
  const ast = parseClean(EXAMPLE);
  const model = ast.models[0];

  it("has the expected top-level shape", () => {
    expect(ast.kind).toBe("file");
    expect(ast.file).toBe("t.fog");
    expect(ast.imports.map((i) => i.path)).toEqual(["common.fog"]);
    expect(at(EXAMPLE, ast.imports[0].pathSpan)).toBe('2:8-2:20 "common.fog"');
    expect(at(EXAMPLE, ast.imports[0].span)).toBe('2:1-2:20 import "common.fog"');
    expect(ast.sections.map((s) => [s.type, s.labels.map((l) => l.kind)])).toEqual([["precision", ["path"]]]);
    expect(ast.models.map((m) => [m.name, m.extends])).toEqual([["fog_max", "base"]]);
    expect(at(EXAMPLE, model.nameSpan)).toBe("14:7-14:14 fog_max");
    expect(at(EXAMPLE, model.extendsSpan!)).toBe("14:23-14:27 base");
    expect(model.span.line).toBe(14);
    expect(model.span.endLine).toBe(42);
    expect(ast.span).toMatchObject({ line: 1, col: 1, offset: 0, endOffset: EXAMPLE.length });
  });

  it("keeps members in source order, `;` and juxtaposition both separating", () => {
    expect(model.members.map((m) => (m.kind === "attribute" ? m.key : `${m.type}{}`))).toEqual([
      "vocab",
      "context",
      "width",
      "layers",
      "heads",
      "kv_heads",
      "head_dim",
      "mlp_width",
      "embedding{}",
      "head{}",
      "attention{}",
      "mlp{}",
      "block{}",
      "precision",
      "train{}",
    ]);
    const train = section(model.members, "train");
    expect(train.members.map((m) => (m.kind === "attribute" ? m.key : m.type))).toEqual([
      "data",
      "tokenizer",
      "batch",
      "seq_len",
      "steps",
      "optimizer",
      "schedule",
    ]);
    expect(at(EXAMPLE, attr(model.members, "vocab").span)).toBe("15:3-15:17 vocab = 131072");
  });

  it("parses override sections with path and index labels", () => {
    const precision = ast.sections[0];
    expect(precision.labels).toMatchObject([{ kind: "path", parts: ["fog_fp8dpa"] }]);
    const overrides = precision.members.filter((m): m is Section => m.kind === "section");
    expect(overrides.map((o) => o.type)).toEqual(["override", "override"]);
    const [layers, qk] = overrides;
    expect(layers.labels).toMatchObject([
      { kind: "path", parts: ["layers"] },
      { kind: "indices", ranges: [{ from: 0, to: 0 }, { from: 15, to: 15 }] },
    ]);
    expect(at(EXAMPLE, layers.labels[1].span)).toBe("10:19-10:24 0, 15");
    expect(at(EXAMPLE, layers.span)).toBe("10:3-10:40 override layers 0, 15 { mode = bf16 }");
    expect(show(attr(layers.members, "mode").value)).toBe("bf16");
    expect(qk.labels).toMatchObject([{ kind: "path", parts: ["attn", "qk"] }]);
    expect(at(EXAMPLE, qk.labels[0].span)).toBe("11:12-11:19 attn.qk");
  });

  it("parses nested calls with named arguments, and gives the rope call its span", () => {
    const attention = section(model.members, "attention");
    expect(attention.labels).toMatchObject([{ kind: "path", parts: ["attn"] }]);
    const rope = attr(attention.members, "rope");
    expect(show(rope.value)).toBe(
      "rope(base=500000, scaling=llama3(factor=8, low_freq=1, high_freq=4, original=8192))",
    );
    const call = rope.value as Call;
    expect(call.span).toMatchObject({ line: 26, col: 12, endLine: 26, endCol: 107 });
    expect(at(EXAMPLE, call.calleeSpan)).toBe("26:12-26:16 rope");
    expect(at(EXAMPLE, call.args[0].span)).toBe("26:17-26:30 base = 500000");
    expect(at(EXAMPLE, call.args[0].nameSpan!)).toBe("26:17-26:21 base");
    expect(call.args[0].value).toMatchObject({ kind: "number", value: 500000, text: "500000" });
    expect(show(attr(attention.members, "qk_norm").value)).toBe("rmsnorm(gain=frozen(1))");
    expect(show(attr(ast.sections[0].members, "scaling").value)).toBe("delayed(history=1024, margin=0, amax=max)");
  });

  it("reads a modifier before the key", () => {
    const block = section(model.members, "block");
    const probe = block.members[0] as Attribute;
    expect(probe).toMatchObject({ kind: "attribute", key: "a", modifier: "probe" });
    expect(at(EXAMPLE, probe.modifierSpan!)).toBe("32:5-32:10 probe");
    expect(at(EXAMPLE, probe.keySpan)).toBe("32:11-32:12 a");
    expect(at(EXAMPLE, probe.span)).toBe("32:5-32:22 probe a = attn(h)");
    expect(block.members.slice(1).map((m) => (m as Attribute).modifier)).toEqual([undefined, undefined]);
  });

  it("respects operator precedence and unary minus", () => {
    const block = section(model.members, "block");
    const [, h1, h2] = block.members as Attribute[];
    expect(show(h1.value)).toBe("(h + rmsnorm(a, gain=(1 / sqrt(layers))))");
    expect(show(h2.value)).toBe("(h + rmsnorm(ffn(h), gain=(layers ^ (-0.5))))");
    const gain = ((h2.value as { right: Call }).right.args[1].value);
    expect(gain).toMatchObject({ kind: "binary", op: "^", right: { kind: "unary", op: "-", operand: { value: 0.5 } } });
    expect(at(EXAMPLE, gain.span)).toBe("34:36-34:49 layers ^ -0.5");
    expect(show(attr(model.members, "head_dim").value)).toBe("(width / heads)");
    const eps = (attr(section(model.members, "mlp").members, "activation").value as Call).args[3];
    expect(eps.value).toMatchObject({ kind: "unary", op: "-", operand: { kind: "number", value: 1e-6, text: "1e-6" } });
    expect(at(EXAMPLE, eps.value.span)).toBe("30:95-30:100 -1e-6");
  });

  it("parses list literals and number forms", () => {
    const train = section(model.members, "train");
    const optimizer = attr(train.members, "optimizer").value as Call;
    expect(show(optimizer)).toBe("adamw(lr=3e-3, betas=[0.9, 0.95], weight_decay=0.1, clip=1.0)");
    const betas = optimizer.args[1].value;
    expect(betas).toMatchObject({ kind: "list", items: [{ value: 0.9 }, { value: 0.95 }] });
    expect(at(EXAMPLE, betas.span)).toBe("39:42-39:53 [0.9, 0.95]");
    expect(optimizer.args[0].value).toMatchObject({ value: 0.003, text: "3e-3" });
    expect(attr(ast.sections[0].members, "mode").value).toMatchObject({ kind: "ref", name: "fp8dpa" });
  });
});

describe("expressions", () => {
  it("groups by precedence and associativity", () => {
    expect(value("1 - 2 - 3")).toBe("((1 - 2) - 3)");
    expect(value("1 + 2 * 3")).toBe("(1 + (2 * 3))");
    expect(value("8 / 4 / 2")).toBe("((8 / 4) / 2)");
    expect(value("2 ^ 3 ^ 2")).toBe("(2 ^ (3 ^ 2))");
    expect(value("-2 ^ 2")).toBe("(-(2 ^ 2))");
    expect(value("2 * -3 ^ 2")).toBe("(2 * (-(3 ^ 2)))");
    expect(value("- - x")).toBe("(-(-x))");
    expect(value("(1 + 2) * 3")).toBe("((1 + 2) * 3)");
  });

  it("widens a parenthesized expression's span to its parentheses", () => {
    const text = "model m { x = (1 + 2) * 3 }";
    const x = attr(parseClean(text).models[0].members, "x").value;
    expect(at(text, x.span)).toBe("1:15-1:26 (1 + 2) * 3");
    expect(at(text, (x as { left: Expr }).left.span)).toBe("1:15-1:22 (1 + 2)");
  });

  it("accepts trailing commas, empty lists and empty calls", () => {
    expect(value("f(1, 2,)")).toBe("f(1, 2)");
    expect(value("f(a = 1,)")).toBe("f(a=1)");
    expect(value("[1, 2,]")).toBe("[1, 2]");
    expect(value("[]")).toBe("[]");
    expect(value("[[1], [2, 3]]")).toBe("[[1], [2, 3]]");
    expect(value("g()")).toBe("g()");
    expect(value("f(g(h(1)), k = [x])")).toBe("f(g(h(1)), k=[x])");
  });

  it("reads numbers and strings", () => {
    const ast = parseClean('model m { a = 0.02 b = 1.5e3 c = 1E+2 d = 500000 e = "x\\"y\\\\z" f = "" }');
    const [a, b, c, d, e, f] = ast.models[0].members as Attribute[];
    expect(a.value).toMatchObject({ kind: "number", value: 0.02, text: "0.02" });
    expect(b.value).toMatchObject({ value: 1500 });
    expect(c.value).toMatchObject({ value: 100 });
    expect(d.value).toMatchObject({ value: 500000 });
    expect(e.value).toMatchObject({ kind: "string", value: 'x"y\\z' });
    expect(f.value).toMatchObject({ kind: "string", value: "" });
  });
});

describe("sections, labels and files", () => {
  it("takes several labels of both kinds, ranges inclusive", () => {
    const text = "override layers 0, 2..3 ffn.fc2 { mode = bf16 }";
    const s = parseClean(text).sections[0];
    expect(s.type).toBe("override");
    expect(s.labels).toMatchObject([
      { kind: "path", parts: ["layers"] },
      { kind: "indices", ranges: [{ from: 0, to: 0 }, { from: 2, to: 3 }] },
      { kind: "path", parts: ["ffn", "fc2"] },
    ]);
    expect(at(text, s.typeSpan)).toBe("1:1-1:9 override");
    const indices = s.labels[1];
    expect(indices.kind === "indices" && at(text, indices.ranges[1].span)).toBe("1:20-1:24 2..3");
  });

  it("nests sections inside sections and models", () => {
    const ast = parseClean("model m { a { b c { d = 1 } e = 2 } }");
    const a = section(ast.models[0].members, "a");
    expect(a.labels).toEqual([]);
    const b = section(a.members, "b");
    expect(b.labels).toMatchObject([{ kind: "path", parts: ["c"] }]);
    expect(show(attr(b.members, "d").value)).toBe("1");
    expect(show(attr(a.members, "e").value)).toBe("2");
  });

  it("puts a brace on the next line, and allows `,` and `;` after attributes", () => {
    const ast = parseClean("model m\n{\n  attention attn\n  {\n    a = 1, b = 2; c = 3;\n  }\n}\n");
    const attn = section(ast.models[0].members, "attention");
    expect(attn.members.map((m) => (m as Attribute).key)).toEqual(["a", "b", "c"]);
  });

  it("takes keywords only as whole words", () => {
    const ast = parseClean("model models { imports = 1 extends_x = modelx }");
    expect(ast.models[0].name).toBe("models");
    expect(ast.models[0].members.map((m) => (m as Attribute).key)).toEqual(["imports", "extends_x"]);
  });

  it("skips comments and counts CRLF lines once", () => {
    const text = '// head\r\nimport "a.fog" /* block\r\n comment */\r\nmodel m { x = 1 // tail\r\n}\r\n';
    const ast = parseClean(text);
    expect(ast.imports[0].span).toMatchObject({ line: 2, col: 1 });
    expect(ast.models[0].span).toMatchObject({ line: 4, col: 1, endLine: 5, endCol: 2 });
  });

  it("accepts an empty file and a file of comments", () => {
    for (const text of ["", "\n\n", "// nothing\n/* at all */"]) {
      expect(parseClean(text)).toMatchObject({ imports: [], models: [], sections: [] });
    }
  });

  it("keeps imports, models and sections in source order", () => {
    const ast = parseClean('import "a.fog"\nprecision p { mode = bf16 }\nimport "b.fog"\nmodel x { }\nmodel y extends x { }');
    expect(ast.imports.map((i) => i.path)).toEqual(["a.fog", "b.fog"]);
    expect(ast.models.map((m) => [m.name, m.extends])).toEqual([
      ["x", undefined],
      ["y", "x"],
    ]);
    expect(ast.sections.map((s) => s.type)).toEqual(["precision"]);
  });
});
