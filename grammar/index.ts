// The `.fog` front end in one call: `parseFog(text, file)` lexes, parses (with recovery) and builds
// the AST, returning it with every diagnostic of the file, sorted, worded for humans. It never
// throws. Re-exports the AST and diagnostic types.
import type { IRecognitionException, IToken, TokenType } from "chevrotain";
import type { FogFile } from "./ast.js";
import { error, fileStartSpan, sortDiagnostics, type Diagnostic } from "./diagnostics.js";
import { endOfFileSpan, isRealToken, tokenize, tokenSpan } from "./lexer.js";
import { fogParser, OPENERS, UNCLOSED_PREFIX } from "./parser.js";
import { buildAst } from "./to-ast.js";
import { LBracket, LCurly, LParen, tokenLabel } from "./tokens.js";

export * from "./ast.js";
export * from "./diagnostics.js";
export { tokenize } from "./lexer.js";

export interface ParseResult {
  ast: FogFile;
  diagnostics: Diagnostic[];
}

export function parseFog(text: string, file: string): ParseResult {
  const diagnostics: Diagnostic[] = [];
  // Parser recovery creates (and catches) exceptions; their stack traces are never shown, and
  // capturing them is most of the cost of parsing a broken file. Restored in `finally`.
  const stackTraceLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    const lexed = tokenize(text, file);
    diagnostics.push(...lexed.diagnostics);
    const tooDeep = firstTooDeep(lexed.tokens);
    if (tooDeep !== undefined) {
      // The parser and the visitor recurse once per level; refuse before the stack runs out.
      const message = `nesting too deep: more than ${MAX_NESTING} levels of brackets`;
      diagnostics.push(error(tokenSpan(tooDeep, file), message));
      return { ast: emptyFile(text, file), diagnostics: sortDiagnostics(diagnostics) };
    }
    fogParser.input = lexed.tokens;
    const cst = fogParser.file();
    diagnostics.push(...parserDiagnostics(fogParser.errors, lexed.tokens, text, file));
    const built = buildAst(cst, text, file);
    diagnostics.push(...built.diagnostics);
    return { ast: built.ast, diagnostics: sortDiagnostics(diagnostics) };
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    const message =
      e instanceof RangeError ? `too deeply nested to parse (${why})` : `internal parser error: ${why}`;
    diagnostics.push(error(fileStartSpan(file), message));
    return { ast: emptyFile(text, file), diagnostics: sortDiagnostics(diagnostics) };
  } finally {
    Error.stackTraceLimit = stackTraceLimit;
    fogParser.input = [];
  }
}

/**
 * Parser exceptions -> diagnostics at the offending token (end of file: its last character).
 * The parser's "unclosed" errors get where the bracket opened. When parsing ran into the end of
 * file, every bracket still open there is reported once ("unclosed '{' (opened at L:C)"); when it
 * did not, recovery closed them at an error already reported, and nothing is added.
 */
function parserDiagnostics(
  errors: readonly IRecognitionException[],
  tokens: readonly IToken[],
  text: string,
  file: string,
): Diagnostic[] {
  const unclosed = unclosedOpeners(tokens);
  const eof = endOfFileSpan(text, file);
  const opened = (t: IToken): string => `${UNCLOSED_PREFIX}${tokenLabel(t.tokenType)} (opened at ${t.startLine}:${t.startColumn})`;
  const out: Diagnostic[] = [];
  let bareUnclosed: Diagnostic | undefined;
  let hitEnd = false;
  for (const e of errors) {
    const real = isRealToken(e.token);
    hitEnd ||= !real;
    const span = real ? tokenSpan(e.token, file) : eof;
    if (!e.message.startsWith(UNCLOSED_PREFIX)) {
      out.push(error(span, e.message));
      continue;
    }
    const opener = [...OPENERS.values()].find((o) => e.message === `${UNCLOSED_PREFIX}${o.LABEL}`);
    const open = opener && unclosed.get(opener)?.pop();
    // No open bracket in the text: the parser closes one it made up itself while recovering from
    // an earlier error, which already says what is wrong.
    if (open === undefined) bareUnclosed ??= error(span, e.message);
    else out.push(error(span, opened(open)));
  }
  if (hitEnd) {
    const rest = [...unclosed.values()].flat().sort((a, b) => b.startOffset - a.startOffset);
    for (const open of rest) out.push(error(eof, opened(open)));
  }
  if (out.length === 0 && bareUnclosed !== undefined) out.push(bareUnclosed);
  return out;
}

/** Brackets (of all kinds together) may nest this deep; real configurations use a handful. */
export const MAX_NESTING = 64;

/** The first opening bracket that goes deeper than MAX_NESTING, if any. */
function firstTooDeep(tokens: readonly IToken[]): IToken | undefined {
  let depth = 0;
  for (const t of tokens) {
    if (OPENERS.has(t.tokenType)) depth = Math.max(0, depth - 1); // a closer
    else if (t.tokenType === LCurly || t.tokenType === LParen || t.tokenType === LBracket) {
      if (++depth > MAX_NESTING) return t;
    }
  }
  return undefined;
}

/** For each opener type, the openers never closed by end of file, innermost last. */
function unclosedOpeners(tokens: readonly IToken[]): Map<TokenType, IToken[]> {
  const stacks = new Map<TokenType, IToken[]>([...OPENERS.values()].map((o) => [o, []]));
  for (const t of tokens) {
    const stack = stacks.get(t.tokenType);
    if (stack !== undefined) {
      stack.push(t);
      continue;
    }
    const opener = OPENERS.get(t.tokenType);
    if (opener !== undefined) stacks.get(opener)?.pop();
  }
  return stacks;
}

function emptyFile(text: string, file: string): FogFile {
  const lines = text.split("\n");
  const last = lines[lines.length - 1] ?? "";
  return {
    kind: "file",
    file,
    imports: [],
    models: [],
    sections: [],
    span: {
      file,
      line: 1,
      col: 1,
      endLine: lines.length,
      endCol: last.length + 1,
      offset: 0,
      endOffset: text.length,
    },
  };
}
