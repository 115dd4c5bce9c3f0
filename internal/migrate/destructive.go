package migrate

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrDestructive is matched (errors.Is) by a *DestructiveError.
var ErrDestructive = errors.New("migrate: destructive migration")

// DestructiveError reports a pending migration that would destroy data and was
// not allowed with Options.AllowDestructive.
type DestructiveError struct {
	File   string // file name, e.g. "0007_drop_legacy.sql"
	Line   int    // 1-based line of the offending statement
	Reason string // what was found, e.g. "DROP TABLE"
}

func (e *DestructiveError) Error() string {
	return fmt.Sprintf("migrate: %s line %d: %s destroys data; refusing to apply it (nothing was applied) "+
		"unless destructive migrations are explicitly allowed (Options.AllowDestructive)", e.File, e.Line, e.Reason)
}

// Is makes errors.Is(err, ErrDestructive) true.
func (e *DestructiveError) Is(target error) bool { return target == ErrDestructive }

// finding is one destructive statement found in a migration.
type finding struct {
	line   int
	reason string
}

// findDestructive returns the first statement in sql that drops or empties a
// table, a schema or a column:
//
//   - DROP TABLE, DROP SCHEMA, DROP DATABASE, DROP OWNED
//   - any other DROP ... CASCADE (it can take tables or columns with it)
//   - TRUNCATE
//   - DELETE FROM without a WHERE clause
//   - ALTER TABLE ... DROP [COLUMN] (but not DROP CONSTRAINT, DEFAULT, NOT NULL,
//     IDENTITY or EXPRESSION)
//
// Comments, string literals and quoted identifiers are ignored; dollar-quoted
// bodies are scanned as code, so DO blocks are checked (and so are function
// bodies, conservatively). Dynamic SQL built in strings (EXECUTE '...') is not
// seen: this is a guard against accidents, not a proof.
func findDestructive(sql string) (finding, bool) {
	for _, st := range splitStatements(lex(sql, 1)) {
		if f, ok := checkStatement(st); ok {
			return f, true
		}
	}
	return finding{}, false
}

type token struct {
	text string // upper-cased word, a punctuation character, or "" for a quoted identifier
	line int
}

func splitStatements(toks []token) [][]token {
	var out [][]token
	start := 0
	for i, t := range toks {
		if t.text == ";" {
			if i > start {
				out = append(out, toks[start:i])
			}
			start = i + 1
		}
	}
	if start < len(toks) {
		out = append(out, toks[start:])
	}
	return out
}

// notColumn lists what ALTER TABLE ... DROP may be followed by without dropping
// a column.
var notColumn = []string{"CONSTRAINT", "DEFAULT", "NOT", "IDENTITY", "EXPRESSION"}

// notStatement lists tokens that, placed just before TRUNCATE, make it a trigger
// event or a privilege rather than a command.
var notStatement = []string{"BEFORE", "AFTER", "OR", ",", "GRANT", "REVOKE", "ON"}

func checkStatement(st []token) (finding, bool) {
	word := func(i int) string {
		if i < 0 || i >= len(st) {
			return ""
		}
		return st[i].text
	}
	alterTable := false
	for i := range st {
		if word(i) == "ALTER" && word(i+1) == "TABLE" {
			alterTable = true
		}
	}
	for i, t := range st {
		switch t.text {
		case "TRUNCATE":
			if !slices.Contains(notStatement, word(i-1)) {
				return finding{t.line, "TRUNCATE"}, true
			}
		case "DELETE":
			if word(i+1) == "FROM" && !hasWhere(st[i:]) {
				return finding{t.line, "DELETE FROM without WHERE"}, true
			}
		case "DROP":
			next := word(i + 1)
			if alterTable {
				if next == "COLUMN" || !slices.Contains(notColumn, next) {
					return finding{t.line, "ALTER TABLE ... DROP COLUMN"}, true
				}
				continue
			}
			switch next {
			case "TABLE", "SCHEMA", "DATABASE", "OWNED":
				return finding{t.line, "DROP " + next}, true
			}
			for _, u := range st[i:] {
				if u.text == "CASCADE" {
					return finding{t.line, "DROP " + next + " ... CASCADE"}, true
				}
			}
		}
	}
	return finding{}, false
}

// hasWhere reports whether the DELETE starting st has a WHERE clause at its own
// parenthesis depth (a WHERE inside a subquery of RETURNING does not count).
func hasWhere(st []token) bool {
	depth := 0
	for _, t := range st {
		switch t.text {
		case "(":
			depth++
		case ")":
			depth--
			if depth < 0 { // end of the CTE holding this DELETE
				return false
			}
		case "WHERE":
			if depth == 0 {
				return true
			}
		}
	}
	return false
}

// lex turns SQL into word and punctuation tokens, dropping comments, string
// literals and numbers. Quoted identifiers become an empty token. Dollar-quoted
// bodies are lexed as code.
func lex(s string, line int) []token {
	lx := &lexer{s: s, line: line}
	for lx.i < len(s) {
		c := s[lx.i]
		switch {
		case c == '\n':
			lx.line++
			lx.i++
		case c == '-' && strings.HasPrefix(s[lx.i:], "--"):
			lx.lineComment()
		case c == '/' && strings.HasPrefix(s[lx.i:], "/*"):
			lx.blockComment()
		case c == '\'':
			lx.stringLiteral()
		case c == '"':
			lx.quotedIdent()
		case c == '$':
			lx.dollar()
		case isWordStart(c):
			lx.word()
		case c >= '0' && c <= '9':
			lx.number()
		case c == ';' || c == '(' || c == ')' || c == ',':
			lx.toks = append(lx.toks, token{string(c), lx.line})
			lx.i++
		default:
			lx.i++
		}
	}
	return lx.toks
}

// lexer is lex's state: the text, the position in it, the current line and
// the tokens so far. Each method consumes one construct starting at i.
type lexer struct {
	s    string
	i    int
	line int
	toks []token
}

// lineComment skips a -- comment up to (not including) its newline.
func (lx *lexer) lineComment() {
	for lx.i < len(lx.s) && lx.s[lx.i] != '\n' {
		lx.i++
	}
}

// blockComment skips a /* */ comment, nested ones included.
func (lx *lexer) blockComment() {
	s := lx.s
	depth := 0
	for lx.i < len(s) {
		switch {
		case strings.HasPrefix(s[lx.i:], "/*"):
			depth++
			lx.i += 2
		case strings.HasPrefix(s[lx.i:], "*/"):
			depth--
			lx.i += 2
		default:
			if s[lx.i] == '\n' {
				lx.line++
			}
			lx.i++
		}
		if depth == 0 {
			break
		}
	}
}

// stringLiteral skips a single-quoted literal; after an E prefix, whose
// token it drops, backslash escapes too.
func (lx *lexer) stringLiteral() {
	s, i := lx.s, lx.i
	escapes := len(lx.toks) > 0 && lx.toks[len(lx.toks)-1].text == "E" && i > 0 && (s[i-1] == 'E' || s[i-1] == 'e')
	if escapes {
		lx.toks = lx.toks[:len(lx.toks)-1]
	}
	lx.skipQuoted('\'', escapes)
}

// quotedIdent consumes a double-quoted identifier and emits an empty token
// for it.
func (lx *lexer) quotedIdent() {
	lx.skipQuoted('"', false)
	lx.toks = append(lx.toks, token{"", lx.line})
}

// skipQuoted skips from the opening quote q at i past its closing one: a
// doubled q inside is one q and, with backslash, a backslash escapes the
// next byte.
func (lx *lexer) skipQuoted(q byte, backslash bool) {
	s := lx.s
	lx.i++
	for lx.i < len(s) {
		switch {
		case backslash && s[lx.i] == '\\':
			lx.i += 2
			continue
		case s[lx.i] == q:
			if lx.i+1 < len(s) && s[lx.i+1] == q {
				lx.i += 2
				continue
			}
			lx.i++
			return
		case s[lx.i] == '\n':
			lx.line++
		}
		lx.i++
	}
}

// dollar consumes a dollar-quoted body ($$...$$ or $tag$...$tag$), lexing
// it as code, or skips the $ of a parameter such as $1.
func (lx *lexer) dollar() {
	s, i := lx.s, lx.i
	tag, ok := dollarTag(s[i:])
	if !ok { // a parameter such as $1
		lx.i++
		return
	}
	bodyStart := i + len(tag)
	end := strings.Index(s[bodyStart:], tag)
	if end < 0 {
		end = len(s) - bodyStart
	}
	body := s[bodyStart : bodyStart+end]
	lx.toks = append(lx.toks, lex(body, lx.line)...)
	lx.line += strings.Count(s[i:bodyStart+end], "\n")
	lx.i = min(len(s), bodyStart+end+len(tag))
}

// word consumes a keyword or identifier and emits it upper-cased.
func (lx *lexer) word() {
	j := lx.i
	for j < len(lx.s) && isWordPart(lx.s[j]) {
		j++
	}
	lx.toks = append(lx.toks, token{strings.ToUpper(lx.s[lx.i:j]), lx.line})
	lx.i = j
}

// number skips a numeric literal.
func (lx *lexer) number() {
	for lx.i < len(lx.s) && (isWordPart(lx.s[lx.i]) || lx.s[lx.i] == '.') {
		lx.i++
	}
}

// dollarTag returns the opening delimiter ($$ or $tag$) at the start of s.
func dollarTag(s string) (string, bool) {
	for j := 1; j < len(s); j++ {
		c := s[j]
		if c == '$' {
			return s[:j+1], true
		}
		if !(isWordStart(c) || (j > 1 && c >= '0' && c <= '9')) {
			return "", false
		}
	}
	return "", false
}

func isWordStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80
}

func isWordPart(c byte) bool { return isWordStart(c) || (c >= '0' && c <= '9') || c == '$' }
