// Malformed `.fog` inputs through parseFog, each checked against the exact text the user would
// see (formatDiagnostic: file:line:col, message, source line, caret), plus recovery: what follows
// an error still reaches the AST. Valid edge cases (trailing commas, empty file) give no errors.
import { describe, expect, it } from "vitest";
import { formatDiagnostic, parseFog, type Attribute, type FogFile, type Member } from "../../grammar/index.js";

/** Every diagnostic of `source`, formatted as printed, one after another. */
function report(source: string): string {
  return parseFog(source, "x.fog")
    .diagnostics.map((d) => formatDiagnostic(d, source))
    .join("\n");
}

function names(members: Member[]): string[] {
  return members.map((m) => (m.kind === "attribute" ? m.key : `${m.type}{${names(m.members).join(",")}}`));
}

function outline(ast: FogFile): string[] {
  return [
    ...ast.imports.map((i) => `import ${i.path}`),
    ...ast.sections.map((s) => `${s.type}{${names(s.members).join(",")}}`),
    ...ast.models.map((m) => `model ${m.name}{${names(m.members).join(",")}}`),
  ];
}

/** [what is wrong, source, expected report] -- the expected text starts and ends with a newline. */
const CASES: [string, string, string][] = [
  [
    "missing '=' after a key",
    "model m {\n  width 1024\n  layers = 16\n}\n",
    `
x.fog:2:9: error: expected '=' or '{' after 'width'
2 |   width 1024
  |         ^^^^
`,
  ],
  [
    "missing '=' after a modifier and key",
    "model m { block { probe a attn(h) } }",
    `
x.fog:1:27: error: expected '=' or '{' after 'a'
1 | model m { block { probe a attn(h) } }
  |                           ^^^^
`,
  ],
  [
    "a key followed by nothing usable",
    "model m { width }",
    `
x.fog:1:17: error: expected '=' or '{' after 'width'
1 | model m { width }
  |                 ^
`,
  ],
  [
    "missing value before the next attribute",
    "model m {\n  width =\n  layers = 16\n}\n",
    `
x.fog:3:3: error: expected an expression after '='
3 |   layers = 16
  |   ^^^^^^
`,
  ],
  [
    "missing value before '}'",
    "model m { width = }",
    `
x.fog:1:19: error: expected an expression after '='
1 | model m { width = }
  |                   ^
`,
  ],
  [
    "missing value at end of file",
    "model m { width =",
    `
x.fog:1:17: error: expected an expression after '='
1 | model m { width =
  |                 ^
x.fog:1:17: error: unclosed '{' (opened at 1:9)
1 | model m { width =
  |                 ^
`,
  ],
  [
    "missing right operand",
    "model m { x = 1 + }",
    `
x.fog:1:19: error: expected an expression after '+'
1 | model m { x = 1 + }
  |                   ^
`,
  ],
  [
    "missing exponent",
    "model m { x = layers ^ }",
    `
x.fog:1:24: error: expected an expression after '^'
1 | model m { x = layers ^ }
  |                        ^
`,
  ],
  [
    "missing named argument value",
    "model m { x = f(eps = ) }",
    `
x.fog:1:23: error: expected an expression after '='
1 | model m { x = f(eps = ) }
  |                       ^
`,
  ],
  [
    "unclosed '{' at end of file",
    "model m {\n  width = 1024\n",
    `
x.fog:2:14: error: unclosed '{' (opened at 1:9)
2 |   width = 1024
  |              ^
`,
  ],
  [
    "unclosed inner '{'",
    "model m {\n  attention attn {\n    causal = true\n}\n",
    `
x.fog:4:1: error: unclosed '{' (opened at 1:9)
4 | }
  | ^
`,
  ],
  [
    "unclosed '(' at end of file",
    "model m {\n  x = rmsnorm(h, gain = 1",
    `
x.fog:2:25: error: unclosed '(' (opened at 2:14)
2 |   x = rmsnorm(h, gain = 1
  |                         ^
x.fog:2:25: error: unclosed '{' (opened at 1:9)
2 |   x = rmsnorm(h, gain = 1
  |                         ^
`,
  ],
  [
    "unclosed '[' at end of file",
    "model m { betas = [0.9, 0.95",
    `
x.fog:1:28: error: unclosed '[' (opened at 1:19)
1 | model m { betas = [0.9, 0.95
  |                            ^
x.fog:1:28: error: unclosed '{' (opened at 1:9)
1 | model m { betas = [0.9, 0.95
  |                            ^
`,
  ],
  [
    "missing ')' before '}'",
    "model m { x = f(a, b }",
    `
x.fog:1:22: error: expected ',' or ')' but found '}'
1 | model m { x = f(a, b }
  |                      ^
`,
  ],
  [
    "missing ')' in a parenthesized expression",
    "model m { x = (1 + 2 }",
    `
x.fog:1:22: error: expected ')' but found '}'
1 | model m { x = (1 + 2 }
  |                      ^
`,
  ],
  [
    "missing ']' before '}'",
    "model m { x = [1, 2 }",
    `
x.fog:1:21: error: expected ',' or ']' but found '}'
1 | model m { x = [1, 2 }
  |                     ^
`,
  ],
  [
    "a separator missing between arguments",
    "model m { x = f(a b) y = 2 }",
    `
x.fog:1:19: error: expected ',' or ')' but found 'b'
1 | model m { x = f(a b) y = 2 }
  |                   ^
`,
  ],
  [
    "an argument missing after '('",
    "model m { x = f(,) }",
    `
x.fog:1:17: error: expected an expression or ')' after '('
1 | model m { x = f(,) }
  |                 ^
`,
  ],
  [
    "stray '}' at top level",
    "model m { }\n}\n",
    `
x.fog:2:1: error: unexpected '}'
2 | }
  | ^
`,
  ],
  [
    "stray tokens inside a body",
    "model m { x = 1 ) 2 y = 3 }",
    `
x.fog:1:17: error: unexpected ')'
1 | model m { x = 1 ) 2 y = 3 }
  |                 ^
`,
  ],
  [
    "a number where a member should be",
    "model m { 5 }",
    `
x.fog:1:11: error: unexpected '5'
1 | model m { 5 }
  |           ^
`,
  ],
  [
    "bad character",
    "model m { width = 1024 $ }",
    `
x.fog:1:24: error: unexpected character '$'
1 | model m { width = 1024 $ }
  |                        ^
`,
  ],
  [
    "several bad characters in a row",
    "model m { x = 1 @@ }",
    `
x.fog:1:17: error: unexpected characters '@@'
1 | model m { x = 1 @@ }
  |                 ^^
`,
  ],
  [
    "unterminated string",
    "import \"common.fog\nmodel m { }\n",
    `
x.fog:1:8: error: unterminated string: missing closing '"' on this line
1 | import "common.fog
  |        ^
`,
  ],
  [
    "unterminated block comment",
    "model m { }\n/* the rest\nof the file\n",
    `
x.fog:2:1: error: unterminated block comment: '/*' has no matching '*/'
2 | /* the rest
  | ^^
`,
  ],
  [
    "unknown escape in a string",
    "import \"C:\\models\\a.fog\"",
    `
x.fog:1:11: error: unknown escape '\\m' in string (use '\\\\' for a backslash)
1 | import "C:\\models\\a.fog"
  |           ^^
x.fog:1:18: error: unknown escape '\\a' in string (use '\\\\' for a backslash)
1 | import "C:\\models\\a.fog"
  |                  ^^
`,
  ],
  [
    "model without a name",
    "model { width = 1 }",
    `
x.fog:1:7: error: expected a name after 'model'
1 | model { width = 1 }
  |       ^
`,
  ],
  [
    "model with a number for a name",
    "model 42 { }",
    `
x.fog:1:7: error: expected a name after 'model'
1 | model 42 { }
  |       ^^
`,
  ],
  [
    "extends without a name",
    "model m extends { width = 1 }",
    `
x.fog:1:17: error: expected a name after 'extends'
1 | model m extends { width = 1 }
  |                 ^
`,
  ],
  [
    "missing '{' after the model header",
    "model m width = 1 }",
    `
x.fog:1:9: error: expected '{' after 'm'
1 | model m width = 1 }
  |         ^^^^^
`,
  ],
  [
    "import without a string",
    "import\nmodel m { }\n",
    `
x.fog:2:1: error: expected a string after 'import'
2 | model m { }
  | ^^^^^
`,
  ],
  [
    "bad number 1e",
    "model m { eps = 1e }",
    `
x.fog:1:17: error: malformed number '1e'
1 | model m { eps = 1e }
  |                 ^^
`,
  ],
  [
    "bad number with trailing letters",
    "model m { x = 12abc }",
    `
x.fog:1:15: error: malformed number '12abc'
1 | model m { x = 12abc }
  |               ^^^^^
`,
  ],
  [
    "'0..' without an end",
    "override layers 0.. { mode = bf16 }",
    `
x.fog:1:21: error: expected a number after '..'
1 | override layers 0.. { mode = bf16 }
  |                     ^
`,
  ],
  [
    "non-integer index label",
    "override layers 1.5 { mode = bf16 }",
    `
x.fog:1:17: error: index label must be a non-negative integer, found '1.5'
1 | override layers 1.5 { mode = bf16 }
  |                 ^^^
`,
  ],
  [
    "negative index label",
    "override layers -1 { mode = bf16 }",
    `
x.fog:1:17: error: index label must be a non-negative integer, found '-1'
1 | override layers -1 { mode = bf16 }
  |                 ^^
`,
  ],
  [
    "index label too large",
    "override layers 0..99999999999999999999 { }",
    `
x.fog:1:20: error: index label is too large, found '99999999999999999999'
1 | override layers 0..99999999999999999999 { }
  |                    ^^^^^^^^^^^^^^^^^^^^
`,
  ],
  [
    "a top-level attribute",
    "width = 1024\nmodel m { }\n",
    `
x.fog:1:1: error: expected 'model', 'import' or a section at top level
1 | width = 1024
  | ^^^^^^^^^^^^
`,
  ],
  [
    "two errors in one file, both reported",
    "model m {\n  width 1024\n  heads = \n}\nmodel n { layers = 2 ) }\n",
    `
x.fog:2:9: error: expected '=' or '{' after 'width'
2 |   width 1024
  |         ^^^^
x.fog:4:1: error: expected an expression after '='
4 | }
  | ^
x.fog:5:22: error: unexpected ')'
5 | model n { layers = 2 ) }
  |                      ^
`,
  ],
];

describe("diagnostics for malformed input", () => {
  it.each(CASES)("%s", (_name, source, expected) => {
    expect(report(source)).toBe(expected.slice(1, -1));
  });

  it("reports every diagnostic with a message and a span inside the file", () => {
    for (const [, source] of CASES) {
      const lines = source.split(/\r?\n/);
      for (const d of parseFog(source, "x.fog").diagnostics) {
        expect(d.severity).toBe("error");
        expect(d.message).not.toBe("");
        expect(d.span.line).toBeGreaterThanOrEqual(1);
        expect(d.span.line).toBeLessThanOrEqual(lines.length);
        expect(d.span.col).toBeGreaterThanOrEqual(1);
      }
    }
  });
});

describe("recovery", () => {
  it("keeps parsing after a missing '=' (the later members still appear)", () => {
    const source = "model m {\n  width 1024\n  layers = 16\n  attention attn { causal = true }\n}\nmodel n { x = 1 }\n";
    const { ast, diagnostics } = parseFog(source, "x.fog");
    expect(diagnostics.map((d) => d.message)).toEqual(["expected '=' or '{' after 'width'"]);
    expect(outline(ast)).toEqual(["model m{width,layers,attention{causal}}", "model n{x}"]);
    const width = ast.models[0].members[0] as Attribute;
    expect(width.value).toMatchObject({ kind: "number", value: 1024 });
  });

  it("drops an attribute without a value and keeps the next one", () => {
    const { ast } = parseFog("model m {\n  width =\n  layers = 16\n}\n", "x.fog");
    expect(outline(ast)).toEqual(["model m{layers}"]);
  });

  it("skips stray tokens inside a body up to the next member", () => {
    const { ast } = parseFog("model m { x = 1 ) 2 y = 3 }", "x.fog");
    expect(outline(ast)).toEqual(["model m{x,y}"]);
  });

  it("goes on after a stray '}' between models", () => {
    const { ast } = parseFog("model a { x = 1 } }\nmodel b { y = 2 }", "x.fog");
    expect(outline(ast)).toEqual(["model a{x}", "model b{y}"]);
  });

  it("keeps what was parsed of an unclosed body", () => {
    const { ast } = parseFog("model m {\n  attention attn {\n    causal = true\n}\n", "x.fog");
    expect(outline(ast)).toEqual(["model m{attention{causal}}"]);
    expect(ast.models[0].span).toMatchObject({ line: 1, col: 1, endLine: 4, endCol: 2 });
  });

  it("drops the call with a missing separator but keeps the rest", () => {
    const { ast } = parseFog("model m { x = f(a b) y = 2 }", "x.fog");
    expect(outline(ast)).toEqual(["model m{x,y}"]);
  });

  it("parses past lexing errors", () => {
    const { ast } = parseFog('import "common.fog\nmodel m { w = 1 $ v = 2 }\n', "x.fog");
    expect(outline(ast)).toEqual(["import common.fog", "model m{w,v}"]);
  });

  it("reports a top-level attribute but keeps the model after it", () => {
    const { ast } = parseFog("width = 1024\nmodel m { }\n", "x.fog");
    expect(outline(ast)).toEqual(["model m{}"]);
  });

  it("skips a model without a name but parses the next one", () => {
    const { ast, diagnostics } = parseFog("model { a = 1 }\nmodel ok { b = 2 }", "x.fog");
    expect(diagnostics).toHaveLength(1);
    expect(outline(ast)).toEqual(["model ok{b}"]);
  });

  it("keeps a model whose 'extends' lacks a name, without a base", () => {
    const { ast } = parseFog("model m extends { width = 1 }", "x.fog");
    expect(ast.models[0].name).toBe("m");
    expect(ast.models[0].extends).toBeUndefined();
    expect(outline(ast)).toEqual(["model m{width}"]);
  });

  it("skips a bad index label but keeps the section", () => {
    const { ast } = parseFog("override layers 1.5, 2 { mode = bf16 }", "x.fog");
    expect(ast.sections[0].labels).toMatchObject([
      { kind: "path", parts: ["layers"] },
      { kind: "indices", ranges: [{ from: 2, to: 2 }] },
    ]);
  });
});

describe("limits", () => {
  it("parses brackets nested 64 deep and refuses 65 with a positioned error", () => {
    const nested = (n: number): string => `model m { x = ${"f(".repeat(n - 1)}1${")".repeat(n - 1)} }`;
    expect(parseFog(nested(64), "x.fog").diagnostics).toEqual([]);
    const deep = nested(65);
    expect(report(deep).split("\n")[0]).toBe("x.fog:1:142: error: nesting too deep: more than 64 levels of brackets");
  });

  it("turns a stack overflow on absurd input into a diagnostic instead of throwing", () => {
    const { diagnostics } = parseFog(`model m { x = ${"-".repeat(50_000)}1 }`, "x.fog");
    expect(diagnostics.map((d) => d.message)).toEqual([
      expect.stringMatching(/^too deeply nested to parse/),
    ]);
  });
});

describe("valid edge cases", () => {
  it.each([
    ["an empty file", ""],
    ["only whitespace and comments", "\n  // nothing\n/* at all */\n"],
    ["trailing commas in calls and lists", "model m { x = f(1, 2,) y = [1, 2,] z = g(a = 1,) }"],
    ["empty calls, lists and bodies", "model m { x = f() y = [] s { } }"],
    ["separators after attributes", "model m { a = 1, b = 2; c = 3 }"],
    ["an escaped quote and backslash", 'import "a\\"b\\\\c.fog"'],
  ])("%s gives no diagnostics", (_name, source) => {
    expect(parseFog(source, "x.fog").diagnostics).toEqual([]);
  });
});
