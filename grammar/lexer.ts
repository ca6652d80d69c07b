// The `.fog` lexer: `tokenize(text, file)` takes source text and returns the tokens the parser
// reads plus positioned diagnostics for what could not be lexed (stray characters, unterminated
// strings and comments, malformed numbers, unknown escapes). It never throws.
import { Lexer, type ILexingError, type IToken } from "chevrotain";
import { error, type Diagnostic, type Span } from "./diagnostics.js";
import {
  allTokens,
  NumberLiteral,
  StringLiteral,
  UnterminatedBlockComment,
  UnterminatedString,
  WELL_FORMED_NUMBER,
} from "./tokens.js";

export const fogLexer = new Lexer(allTokens, {
  positionTracking: "full",
  ensureOptimizations: true,
  // Only "\n" ends a line (so "\r\n" counts once and a lone "\r" not at all), as in formatDiagnostic.
  lineTerminatorsPattern: /\n/g,
  lineTerminatorCharacters: ["\n"],
});

export interface TokenizeResult {
  tokens: IToken[];
  diagnostics: Diagnostic[];
}

export function tokenize(text: string, file: string): TokenizeResult {
  const result = fogLexer.tokenize(text);
  const diagnostics: Diagnostic[] = [];
  for (const e of result.errors) diagnostics.push(lexingErrorDiagnostic(e, text, file));
  for (const t of result.groups["errors"] ?? []) {
    if (t.tokenType === UnterminatedBlockComment) {
      diagnostics.push(error(tokenSpan(t, file, 2), "unterminated block comment: '/*' has no matching '*/'"));
    }
  }
  for (const t of result.tokens) {
    if (t.tokenType === UnterminatedString) {
      diagnostics.push(error(tokenSpan(t, file, 1), "unterminated string: missing closing '\"' on this line"));
      checkEscapes(t, file, diagnostics);
    } else if (t.tokenType === StringLiteral) {
      checkEscapes(t, file, diagnostics);
    } else if (t.tokenType === NumberLiteral && !WELL_FORMED_NUMBER.test(t.image)) {
      diagnostics.push(error(tokenSpan(t, file), `malformed number '${t.image}'`));
    }
  }
  return { tokens: result.tokens, diagnostics };
}

/** The escapes a string may contain, and what they stand for. */
export const STRING_ESCAPES: Readonly<Record<string, string>> = { '"': '"', "\\": "\\", n: "\n", t: "\t" };

function checkEscapes(t: IToken, file: string, out: Diagnostic[]): void {
  const s = t.image;
  for (let i = 1; i < s.length; i++) {
    if (s[i] !== "\\") continue;
    const c = s[i + 1];
    if (c === undefined) {
      out.push(error(offsetSpan(t, file, i, 1), "a string cannot end with a lone '\\'"));
    } else if (!Object.hasOwn(STRING_ESCAPES, c)) {
      out.push(error(offsetSpan(t, file, i, 2), `unknown escape '\\${c}' in string (use '\\\\' for a backslash)`));
    }
    i++;
  }
}

function lexingErrorDiagnostic(e: ILexingError, text: string, file: string): Diagnostic {
  const length = Math.max(1, e.length);
  const chars = text.slice(e.offset, e.offset + length);
  const start = positionAt(text, e.offset);
  const line = e.line ?? start.line;
  const col = e.column ?? start.col;
  const span: Span = {
    file,
    line,
    col,
    endLine: line,
    endCol: col + length,
    offset: e.offset,
    endOffset: e.offset + length,
  };
  const shown = showChars(chars);
  return error(span, length === 1 ? `unexpected character ${shown}` : `unexpected characters ${shown}`);
}

function showChars(s: string): string {
  let out = "";
  for (const ch of s) {
    const code = ch.codePointAt(0) ?? 0;
    out += code < 0x20 || code === 0x7f ? `\\u${code.toString(16).padStart(4, "0")}` : ch;
  }
  return `'${out}'`;
}

/**
 * The span of a token (exclusive end), or of its first `maxLength` characters. Only for tokens
 * from the source: check `isRealToken` first on tokens that parser recovery may have made up.
 */
export function tokenSpan(t: IToken, file: string, maxLength?: number): Span {
  const length = Math.min(t.image.length, maxLength ?? t.image.length);
  return offsetSpan(t, file, 0, Math.max(1, length));
}

/** `length` characters of a one-line token starting `from` characters into it. */
function offsetSpan(t: IToken, file: string, from: number, length: number): Span {
  const line = t.startLine ?? 1;
  const col = (t.startColumn ?? 1) + from;
  return {
    file,
    line,
    col,
    endLine: line,
    endCol: col + length,
    offset: t.startOffset + from,
    endOffset: t.startOffset + from + length,
  };
}

/** Whether a token comes from the source (parser recovery inserts tokens with NaN positions). */
export function isRealToken(t: IToken | undefined): t is IToken {
  return (
    t !== undefined &&
    t.tokenType.name !== "EOF" &&
    t.isInsertedInRecovery !== true &&
    Number.isFinite(t.startOffset) &&
    Number.isFinite(t.startLine ?? NaN) &&
    Number.isFinite(t.startColumn ?? NaN)
  );
}

/** 1-based line and column of a 0-based offset. */
export function positionAt(text: string, offset: number): { line: number; col: number } {
  let line = 1;
  let lineStart = 0;
  const end = Math.min(offset, text.length);
  for (let i = 0; i < end; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, col: end - lineStart + 1 };
}

/** Where "end of file" errors point: the last non-whitespace character (1:1 in an empty file). */
export function endOfFileSpan(text: string, file: string): Span {
  let i = text.length - 1;
  while (i >= 0 && /\s/.test(text[i])) i--;
  if (i < 0) return { file, line: 1, col: 1, endLine: 1, endCol: 2, offset: 0, endOffset: Math.min(1, text.length) };
  // A surrogate pair is one character to the reader.
  const low = text.charCodeAt(i);
  if (i > 0 && low >= 0xdc00 && low <= 0xdfff) i--;
  const width = text.codePointAt(i)! > 0xffff ? 2 : 1;
  const { line, col } = positionAt(text, i);
  return { file, line, col, endLine: line, endCol: col + 1, offset: i, endOffset: i + width };
}
