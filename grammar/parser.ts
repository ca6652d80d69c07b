// The `.fog` grammar as a chevrotain CstParser: takes the lexer's tokens and returns a concrete
// syntax tree (with error recovery, so a broken file still yields a partial tree). Grammar only:
// no values, no semantics. Also holds the error message provider that words parser errors.
import {
  CstParser,
  EOF,
  tokenMatcher,
  type IParserErrorMessageProvider,
  type ITokenGrammarPath,
  type IToken,
  type TokenType,
} from "chevrotain";
import {
  allTokens,
  Caret,
  Comma,
  Dot,
  DotDot,
  Equals,
  Extends,
  Identifier,
  Import,
  LBracket,
  LCurly,
  LParen,
  Minus,
  Model,
  NumberLiteral,
  Plus,
  RBracket,
  RCurly,
  RParen,
  Semicolon,
  Slash,
  Star,
  StringLiteral,
  tokenLabel,
} from "./tokens.js";

/** Tokens that may appear in a section header between its type name and its `{`. */
const HEADER_TOKENS: ReadonlySet<TokenType> = new Set([Identifier, NumberLiteral, Dot, DotDot, Comma, Minus]);
/** How far `startsSection` looks for the `{` of a section header. */
const MAX_HEADER_TOKENS = 1000;

/**
 * The grammar:
 *   file      := item*
 *   item      := import | model | member        (a top-level attribute is rejected by to-ast)
 *   import    := 'import' String
 *   model     := 'model' Identifier ('extends' Identifier)? body
 *   body      := '{' member* '}'
 *   member    := section | attribute           (decided by `startsSection`)
 *   attribute := Identifier Identifier? '=' expr (',' | ';')?
 *   section   := Identifier label* body
 *   label     := path | indices
 *   path      := Identifier ('.' Identifier)*
 *   indices   := range (',' range)*
 *   range     := '-'? Number ('..' '-'? Number)?   (signs parsed so to-ast can reject them by name)
 *   expr      := additive
 *   additive  := multiplicative (('+' | '-') multiplicative)*
 *   multiplicative := unary (('*' | '/') unary)*
 *   unary     := '-' unary | power
 *   power     := primary ('^' unary)?
 *   primary   := Number | String | list | parenthesized | reference
 *   reference := Identifier ('(' args? ')')?      (not when the name is followed by '=' or '{')
 *   args      := arg (',' arg)* ','?         (written `arg (',' arg?)*`, see the rule)
 *   arg       := (Identifier '=')? expr
 *   list      := '[' (expr (',' expr)* ','?)? ']'
 *   parenthesized := '(' expr ')'
 */
export class FogParser extends CstParser {
  constructor() {
    super(allTokens, {
      recoveryEnabled: true,
      nodeLocationTracking: "full",
      maxLookahead: 3,
      errorMessageProvider: fogErrorMessages,
    });
    this.performSelfAnalysis();
  }

  /**
   * The member decision. After the first name:
   *   `=` or `name =`                          -> attribute
   *   header tokens (names, numbers, `.`, `..`, `,`, `-`) up to a `{`  -> section
   *   anything else                            -> attribute (a broken one: its error reads
   *                                               "expected '=' or '{' after ...")
   */
  private startsSection(): boolean {
    const second = this.LA(2).tokenType;
    if (second === Equals) return false;
    if (second === Identifier && this.LA(3).tokenType === Equals) return false;
    for (let k = 2; k < 2 + MAX_HEADER_TOKENS; k++) {
      const t = this.LA(k).tokenType;
      if (t === LCurly) return true;
      if (!HEADER_TOKENS.has(t)) return false;
    }
    return false;
  }

  /**
   * Recovery policy: chevrotain prefers inserting a missing token to deleting a stray one. For a
   * closer that comes right after one stray token this guesses wrong (`f(a b)` would become
   * `f(a)` followed by a new member `b`), so there the stray token is deleted instead.
   */
  protected override canTokenTypeBeInsertedInRecovery(tokType: TokenType): boolean {
    return !(OPENERS.has(tokType) && tokenMatcher(this.LA(2), tokType));
  }

  /**
   * Memoized: chevrotain asks for the tokens that may follow a point of the grammar on every
   * recovery attempt and answers by walking the grammar from the top rule. The answer depends
   * only on the grammar path, which is static, so it is cached (bounded, cleared when full).
   */
  protected override getNextPossibleTokenTypes(grammarPath: ITokenGrammarPath): TokenType[] {
    const key = `${grammarPath.ruleStack.join(",")}|${grammarPath.occurrenceStack.join(",")}|${grammarPath.lastTok.name}|${grammarPath.lastTokOccurrence}`;
    let follows = this.followsCache.get(key);
    if (follows === undefined) {
      follows = super.getNextPossibleTokenTypes(grammarPath);
      if (this.followsCache.size >= 4096) this.followsCache.clear();
      this.followsCache.set(key, follows);
    }
    return follows;
  }

  private readonly followsCache = new Map<string, TokenType[]>();

  /** A name starts an expression unless `=` or `{` follows it (those start a member instead). */
  private nameIsExpression(): boolean {
    const next = this.LA(2).tokenType;
    return next !== Equals && next !== LCurly;
  }

  public file = this.RULE("file", () => {
    this.MANY(() => this.SUBRULE(this.item));
  });

  public item = this.RULE("item", () => {
    this.OR([
      { ALT: () => this.SUBRULE(this.importDecl) },
      { ALT: () => this.SUBRULE(this.modelDecl) },
      { ALT: () => this.SUBRULE(this.member) },
    ]);
  });

  public importDecl = this.RULE("importDecl", () => {
    this.CONSUME(Import);
    this.CONSUME(StringLiteral, { LABEL: "path" });
  });

  public modelDecl = this.RULE("modelDecl", () => {
    this.CONSUME(Model);
    this.CONSUME(Identifier, { LABEL: "name" });
    this.OPTION(() => {
      this.CONSUME(Extends);
      this.CONSUME2(Identifier, { LABEL: "base" });
    });
    this.SUBRULE(this.body);
  });

  public body = this.RULE("body", () => {
    this.CONSUME(LCurly);
    this.MANY(() => this.SUBRULE(this.member));
    this.CONSUME(RCurly);
  });

  public member = this.RULE("member", () => {
    this.OR({
      MAX_LOOKAHEAD: 1,
      DEF: [
        { GATE: () => this.startsSection(), ALT: () => this.SUBRULE(this.section) },
        { ALT: () => this.SUBRULE(this.attribute) },
      ],
    });
  });

  public attribute = this.RULE("attribute", () => {
    // With one name it is the key; with two, the first is a modifier (`probe a = ...`).
    this.CONSUME(Identifier, { LABEL: "first" });
    this.OPTION(() => this.CONSUME2(Identifier, { LABEL: "second" }));
    this.CONSUME(Equals);
    this.SUBRULE(this.expr, { LABEL: "value" });
    this.OPTION2(() => {
      this.OR([
        { ALT: () => this.CONSUME(Comma, { LABEL: "separator" }) },
        { ALT: () => this.CONSUME(Semicolon, { LABEL: "separator" }) },
      ]);
    });
  });

  public section = this.RULE("section", () => {
    this.CONSUME(Identifier, { LABEL: "type" });
    this.MANY(() => this.SUBRULE(this.label));
    this.SUBRULE(this.body);
  });

  public label = this.RULE("label", () => {
    this.OR([
      { ALT: () => this.SUBRULE(this.path) },
      { ALT: () => this.SUBRULE(this.indices) },
    ]);
  });

  public path = this.RULE("path", () => {
    this.CONSUME(Identifier, { LABEL: "parts" });
    this.MANY(() => {
      this.CONSUME(Dot);
      this.CONSUME2(Identifier, { LABEL: "parts" });
    });
  });

  public indices = this.RULE("indices", () => {
    this.SUBRULE(this.range, { LABEL: "ranges" });
    this.MANY(() => {
      this.CONSUME(Comma);
      this.SUBRULE2(this.range, { LABEL: "ranges" });
    });
  });

  public range = this.RULE("range", () => {
    this.OPTION(() => this.CONSUME(Minus, { LABEL: "fromMinus" }));
    this.CONSUME(NumberLiteral, { LABEL: "from" });
    this.OPTION2(() => {
      this.CONSUME(DotDot);
      this.OPTION3(() => this.CONSUME2(Minus, { LABEL: "toMinus" }));
      this.CONSUME2(NumberLiteral, { LABEL: "to" });
    });
  });

  public expr = this.RULE("expr", () => {
    this.SUBRULE(this.additive);
  });

  public additive = this.RULE("additive", () => {
    this.SUBRULE(this.multiplicative, { LABEL: "operands" });
    this.MANY(() => {
      this.OR([
        { ALT: () => this.CONSUME(Plus, { LABEL: "ops" }) },
        { ALT: () => this.CONSUME(Minus, { LABEL: "ops" }) },
      ]);
      this.SUBRULE2(this.multiplicative, { LABEL: "operands" });
    });
  });

  public multiplicative = this.RULE("multiplicative", () => {
    this.SUBRULE(this.unary, { LABEL: "operands" });
    this.MANY(() => {
      this.OR([
        { ALT: () => this.CONSUME(Star, { LABEL: "ops" }) },
        { ALT: () => this.CONSUME(Slash, { LABEL: "ops" }) },
      ]);
      this.SUBRULE2(this.unary, { LABEL: "operands" });
    });
  });

  public unary = this.RULE("unary", () => {
    this.OR([
      {
        ALT: () => {
          this.CONSUME(Minus);
          this.SUBRULE(this.unary, { LABEL: "operand" });
        },
      },
      { ALT: () => this.SUBRULE(this.power) },
    ]);
  });

  public power = this.RULE("power", () => {
    this.SUBRULE(this.primary, { LABEL: "base" });
    this.OPTION(() => {
      this.CONSUME(Caret);
      this.SUBRULE(this.unary, { LABEL: "exponent" });
    });
  });

  public primary = this.RULE("primary", () => {
    this.OR([
      { ALT: () => this.CONSUME(NumberLiteral) },
      { ALT: () => this.CONSUME(StringLiteral) },
      { ALT: () => this.SUBRULE(this.list) },
      { ALT: () => this.SUBRULE(this.parenthesized) },
      { GATE: () => this.nameIsExpression(), ALT: () => this.SUBRULE(this.reference) },
    ]);
  });

  public reference = this.RULE("reference", () => {
    this.CONSUME(Identifier, { LABEL: "name" });
    this.OPTION(() => {
      this.CONSUME(LParen);
      this.OPTION2(() => this.SUBRULE(this.args));
      this.CONSUME(RParen);
    });
  });

  // `item (',' item)* ','?` is written `item (',' item?)*` where a comma without an item ends the
  // repetition (the GATE): same language, but nothing follows the MANY inside the rule, which
  // spares chevrotain a costly recovery check at every exit of the loop.
  public args = this.RULE("args", () => {
    this.SUBRULE(this.arg, { LABEL: "items" });
    this.MANY({
      GATE: () => this.LA(0).tokenType !== Comma,
      DEF: () => {
        this.CONSUME(Comma);
        this.OPTION(() => this.SUBRULE2(this.arg, { LABEL: "items" }));
      },
    });
  });

  public arg = this.RULE("arg", () => {
    this.OPTION(() => {
      this.CONSUME(Identifier, { LABEL: "name" });
      this.CONSUME(Equals);
    });
    this.SUBRULE(this.expr, { LABEL: "value" });
  });

  public list = this.RULE("list", () => {
    this.CONSUME(LBracket);
    this.OPTION(() => {
      this.SUBRULE(this.expr, { LABEL: "items" });
      this.MANY({
        GATE: () => this.LA(0).tokenType !== Comma,
        DEF: () => {
          this.CONSUME(Comma);
          this.OPTION2(() => this.SUBRULE2(this.expr, { LABEL: "items" }));
        },
      });
    });
    this.CONSUME(RBracket);
  });

  public parenthesized = this.RULE("parenthesized", () => {
    this.CONSUME(LParen);
    this.SUBRULE(this.expr, { LABEL: "inner" });
    this.CONSUME(RParen);
  });
}

// ---- error messages ------------------------------------------------------------------------

/** Closing token type -> the opener it closes, for "unclosed" messages. */
export const OPENERS: ReadonlyMap<TokenType, TokenType> = new Map([
  [RCurly, LCurly],
  [RParen, LParen],
  [RBracket, LBracket],
]);

/** Prefix of the message for a closer missing at end of file; index.ts appends where it opened. */
export const UNCLOSED_PREFIX = "unclosed ";

/** How a found token reads in a message: `'width'`, `'}'`, `"a.fog"`, `end of file`. */
export function describeToken(t: IToken | undefined): string {
  if (t === undefined || t.tokenType === EOF) return "end of file";
  if (t.image === "") return tokenLabel(t.tokenType);
  const image = t.image.length > 32 ? `${t.image.slice(0, 29)}...` : t.image;
  return t.tokenType === StringLiteral || t.tokenType.CATEGORIES?.includes(StringLiteral) ? image : `'${image}'`;
}

/** " after 'x'" for the token before the error, or "" when there is none. */
function after(previous: IToken | undefined): string {
  if (previous === undefined || previous.tokenType === EOF) return "";
  return ` after ${describeToken(previous)}`;
}

const fogErrorMessages: IParserErrorMessageProvider = {
  buildMismatchTokenMessage({ expected, actual, previous, ruleName }) {
    const closerAtEnd = actual.tokenType === EOF ? OPENERS.get(expected) : undefined;
    if (closerAtEnd !== undefined) return `${UNCLOSED_PREFIX}${tokenLabel(closerAtEnd)}`;
    switch (expected) {
      case EOF:
      case RCurly:
        return `unexpected ${describeToken(actual)}`;
      case Equals:
        return `expected '=' or '{'${after(previous)}`;
      case RParen:
      case RBracket: {
        const close = tokenLabel(expected);
        // Right after `(`, `[` or `,` an item is missing, not a separator.
        if (previous !== undefined && (previous.tokenType === Comma || previous.tokenType === OPENERS.get(expected))) {
          return `expected an expression or ${close}${after(previous)}`;
        }
        const comma = ruleName === "parenthesized" ? "" : "',' or ";
        return `expected ${comma}${close} but found ${describeToken(actual)}`;
      }
      default:
        return `expected ${tokenLabel(expected)}${after(previous)}`;
    }
  },
  buildNotAllInputParsedMessage({ firstRedundant }) {
    return `unexpected ${describeToken(firstRedundant)}`;
  },
  buildNoViableAltMessage({ actual, previous, ruleName }) {
    if (ruleName === "unary" || ruleName === "primary" || ruleName === "power") {
      return `expected an expression${after(previous)}`;
    }
    return `unexpected ${describeToken(actual[0])}`;
  },
  buildEarlyExitMessage({ actual }) {
    return `unexpected ${describeToken(actual[0])}`;
  },
};

/** The one parser instance (chevrotain parsers are reusable: set `input`, call a rule). */
export const fogParser = new FogParser();
