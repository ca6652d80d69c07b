// The `.fog` token vocabulary: chevrotain token types in lexing order, each with a human label
// ("'{'", "a number", "a name") that parser messages use. Takes nothing; exports token types and
// `allTokens`, the ordered list the lexer is built from.
import { createToken, Lexer, type TokenType } from "chevrotain";

// ---- skipped -------------------------------------------------------------------------------

export const WhiteSpace = createToken({
  name: "WhiteSpace",
  pattern: /[ \t\r\n\f\v]+/,
  group: Lexer.SKIPPED,
  line_breaks: true,
});

export const LineComment = createToken({
  name: "LineComment",
  pattern: /\/\/[^\r\n]*/,
  group: Lexer.SKIPPED,
});

export const BlockComment = createToken({
  name: "BlockComment",
  pattern: /\/\*[\s\S]*?\*\//,
  group: Lexer.SKIPPED,
  line_breaks: true,
});

/**
 * A `/*` that never closes. Put in the "errors" group: kept out of the parser's token stream,
 * turned into a diagnostic by `tokenize`.
 */
export const UnterminatedBlockComment = createToken({
  name: "UnterminatedBlockComment",
  pattern: /\/\*[\s\S]*/,
  group: "errors",
  line_breaks: true,
});

// ---- literals and names --------------------------------------------------------------------

/** `"..."` on one line, with `\"`, `\\`, `\n`, `\t` escapes (others are reported by `tokenize`). */
export const StringLiteral = createToken({
  name: "String",
  pattern: /"(?:[^"\\\r\n]|\\[^\r\n])*"/,
  label: "a string",
});

/**
 * A string that reaches the end of its line without a closing quote. It is a String to the parser
 * (category), so parsing goes on as if it were closed; `tokenize` reports it.
 */
export const UnterminatedString = createToken({
  name: "UnterminatedString",
  pattern: /"(?:[^"\\\r\n]|\\[^\r\n])*\\?/,
  label: "a string",
  categories: [StringLiteral],
});

/**
 * Integers, decimals and exponents: `500000`, `0.02`, `1e-5`, `1.5e3`. The pattern also swallows
 * letters glued to the number (`1e`, `12abc`, `1e+`) so that one malformed number is one token;
 * `tokenize` checks every image against `WELL_FORMED_NUMBER`. A decimal point needs a digit after
 * it, so `0..3` lexes as `0`, `..`, `3`.
 */
export const NumberLiteral = createToken({
  name: "Number",
  pattern: /\d+(?:\.\d+)?(?:[eE][+-]?\d*)?[A-Za-z0-9_]*/,
  label: "a number",
});

export const WELL_FORMED_NUMBER = /^\d+(?:\.\d+)?(?:[eE][+-]?\d+)?$/;
/** Numbers written as plain digits: the only ones allowed as index labels. */
export const INTEGER_TEXT = /^\d+$/;

export const Identifier = createToken({
  name: "Identifier",
  pattern: /[A-Za-z_][A-Za-z0-9_]*/,
  label: "a name",
});

export const Import = createToken({
  name: "Import",
  pattern: /import/,
  longer_alt: Identifier,
  label: "'import'",
});

export const Model = createToken({
  name: "Model",
  pattern: /model/,
  longer_alt: Identifier,
  label: "'model'",
});

export const Extends = createToken({
  name: "Extends",
  pattern: /extends/,
  longer_alt: Identifier,
  label: "'extends'",
});

// ---- punctuation ---------------------------------------------------------------------------

function punct(name: string, text: string): TokenType {
  const escaped = text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  return createToken({ name, pattern: new RegExp(escaped), label: `'${text}'` });
}

export const LCurly = punct("LCurly", "{");
export const RCurly = punct("RCurly", "}");
export const LParen = punct("LParen", "(");
export const RParen = punct("RParen", ")");
export const LBracket = punct("LBracket", "[");
export const RBracket = punct("RBracket", "]");
export const Comma = punct("Comma", ",");
export const Semicolon = punct("Semicolon", ";");
export const Equals = punct("Equals", "=");
export const Plus = punct("Plus", "+");
export const Minus = punct("Minus", "-");
export const Star = punct("Star", "*");
export const Slash = punct("Slash", "/");
export const Caret = punct("Caret", "^");
export const DotDot = punct("DotDot", "..");
export const Dot = punct("Dot", ".");

/** Every token type, in the order the lexer tries them (first match wins, longest-alt aside). */
export const allTokens: TokenType[] = [
  WhiteSpace,
  BlockComment,
  UnterminatedBlockComment,
  LineComment,
  StringLiteral,
  UnterminatedString,
  NumberLiteral,
  Import,
  Model,
  Extends,
  Identifier,
  LCurly,
  RCurly,
  LParen,
  RParen,
  LBracket,
  RBracket,
  Comma,
  Semicolon,
  Equals,
  Plus,
  Minus,
  Star,
  Slash,
  Caret,
  DotDot,
  Dot,
];

/** The human label of a token type, e.g. "'{'", "a number", "end of file". */
export function tokenLabel(type: TokenType): string {
  if (type.name === "EOF") return "end of file";
  return type.LABEL ?? type.name;
}
