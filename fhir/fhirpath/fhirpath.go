// Package fhirpath is the FHIRPath subset crs evaluates: the expressions of
// search parameters (fhir/search extracts index values with them at write
// time) and whatever else needs a path into a resource. An expression is
// compiled once into a small tree of nodes; evaluation walks the resource's
// JSON tree (as fhir.Parse makes it) without reflection.
//
// The subset, which covers every expression of every R4 search parameter:
//
//	expr      = expr "or" expr | expr "and" expr
//	          | expr ("=" | "!=") expr
//	          | expr "|" expr
//	          | expr ("is" | "as") typeSpec
//	          | term { "." invocation | "[" integer "]" }
//	term      = invocation | literal | "$this" | "(" expr ")"
//	invocation= identifier                   a child element; the first identifier of a
//	                                         path may name the resource type (Patient,
//	                                         Resource, DomainResource) and then filters
//	          | function "(" [args] ")"
//	literal   = 'string' | number | true | false
//	typeSpec  = [ "FHIR." | "System." ] TypeName
//
// Functions: where(criteria), exists([criteria]), empty(), not(), first(),
// last(), hasValue(), count(), as(T), ofType(T), is(T), extension('url') and
// resolve(), which is allowed only directly before a type test ("resolve() is
// Patient", "resolve().ofType(Patient)"): the server does not fetch targets, it
// reads their type from the reference.
//
// Choice elements are found by their JSON names: "value" finds valueQuantity,
// valueString and so on (for the names of R4's choice elements, listed by
// gen.go in r4choices.json, followed by an R4 data type), with the type taken
// from the suffix, so "value as Quantity" keeps only valueQuantity, and valueAge
// too, an Age being a Quantity. Primitive extensions (the "_birthDate"
// companion of "birthDate") are read when an extension() call follows.
//
// Anything else (other functions, operators such as "<" or "+", environment
// variables such as %resource) is rejected by Compile with an error naming it:
// a search parameter is then marked unsupported, never silently empty.
package fhirpath

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"crs/fhir"
)

//go:generate go run gen.go

//go:embed r4choices.json
var r4choices []byte

// choiceElements is the set of the names of R4 choice elements (value for
// value[x]), from r4choices.json.
var choiceElements = sync.OnceValue(func() map[string]bool {
	var names []string
	if err := json.Unmarshal(r4choices, &names); err != nil {
		panic("fhirpath: r4choices.json: " + err.Error()) // embedded at build time: cannot happen
	}
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	return set
})

// Item is one value of a FHIRPath collection: a JSON value of the resource tree
// with its FHIR type when the path tells it (a choice suffix or a cast).
type Item struct {
	Value    any            // map[string]any, string, json.Number, bool; nil for a primitive with only extensions
	Type     string         // FHIR type name when known: "Quantity", "dateTime", a resource type after resolve()
	Ext      map[string]any // the "_name" companion of a primitive, when an extension() call needs it
	resolved bool           // produced by resolve(): Value is the reference, Type its target type
}

// node is a compiled expression: it maps an input collection (the focus) to an
// output collection.
type node interface {
	eval(focus []Item) []Item
}

// step is one invocation of a path, applied to the collection the path has
// reached so far.
type step interface {
	apply(in []Item) []Item
}

// Expr is a compiled expression. It is immutable and safe for concurrent use.
type Expr struct {
	root node
}

// Eval evaluates the expression on a resource (a tree as fhir.Parse makes it).
func (e *Expr) Eval(res map[string]any) []Item {
	return e.root.eval([]Item{{Value: res}})
}

// EvalFocus evaluates the expression on a focus collection, usually one
// resource: {{Value: res}}, or {{Value: res, Type: "Patient"}} when the caller
// vouches for its type. Callers evaluating many expressions on one resource
// build the focus once.
func (e *Expr) EvalFocus(focus []Item) []Item {
	return e.root.eval(focus)
}

// RootTypes returns the resource types that the branches of the expression
// start from ("" for a branch that starts elsewhere): "Patient.name |
// Practitioner.name" gives Patient and Practitioner.
func (e *Expr) RootTypes() []string { return rootTypes(e.root) }

// Compile parses a FHIRPath expression of the supported subset; anything
// outside it is an error naming what is not supported.
func Compile(src string) (*Expr, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	n, err := p.expr(0)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tkEOF {
		return nil, fmt.Errorf("unexpected %s at offset %d", t, t.pos)
	}
	for _, r := range p.resolves {
		if !r.typed {
			return nil, fmt.Errorf("resolve() is supported only before a type test, as in resolve() is Patient")
		}
	}
	return &Expr{root: n}, nil
}

// ---- lexer ----

type tokKind uint8

const (
	tkEOF    tokKind = iota
	tkIdent          // identifier or keyword
	tkString         // 'text', unescaped
	tkNumber         // 12 or 1.5
	tkVar            // $this, %resource
	tkOp             // | = != ~ !~ < > <= >= + - * / &
	tkLParen
	tkRParen
	tkDot
	tkComma
	tkLBrack
	tkRBrack
)

type token struct {
	kind tokKind
	text string
	pos  int
}

// String renders the token for error messages.
func (t token) String() string {
	switch t.kind {
	case tkEOF:
		return "end of expression"
	case tkString:
		return strconv.Quote(t.text)
	}
	return "'" + t.text + "'"
}

func isIdentStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdentPart(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

func lex(src string) ([]token, error) {
	var toks []token
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case isIdentStart(c):
			j := i + 1
			for j < len(src) && isIdentPart(src[j]) {
				j++
			}
			toks = append(toks, token{tkIdent, src[i:j], i})
			i = j
		case c == '`':
			j := strings.IndexByte(src[i+1:], '`')
			if j < 0 {
				return nil, fmt.Errorf("unterminated `identifier` at offset %d", i)
			}
			toks = append(toks, token{tkIdent, src[i+1 : i+1+j], i})
			i += j + 2
		case c >= '0' && c <= '9':
			j := i
			for j < len(src) && src[j] >= '0' && src[j] <= '9' {
				j++
			}
			if j+1 < len(src) && src[j] == '.' && src[j+1] >= '0' && src[j+1] <= '9' {
				j++
				for j < len(src) && src[j] >= '0' && src[j] <= '9' {
					j++
				}
			}
			toks = append(toks, token{tkNumber, src[i:j], i})
			i = j
		case c == '\'':
			var b strings.Builder
			j := i + 1
			for ; j < len(src) && src[j] != '\''; j++ {
				if src[j] == '\\' && j+1 < len(src) {
					j++
					switch src[j] {
					case 'n':
						b.WriteByte('\n')
					case 't':
						b.WriteByte('\t')
					case 'r':
						b.WriteByte('\r')
					case 'f':
						b.WriteByte('\f')
					case 'u':
						if j+4 < len(src) {
							if r, err := strconv.ParseUint(src[j+1:j+5], 16, 32); err == nil {
								b.WriteRune(rune(r))
								j += 4
								continue
							}
						}
						return nil, fmt.Errorf("bad \\u escape at offset %d", j)
					default: // \' \" \` \\ \/
						b.WriteByte(src[j])
					}
					continue
				}
				b.WriteByte(src[j])
			}
			if j >= len(src) {
				return nil, fmt.Errorf("unterminated string at offset %d", i)
			}
			toks = append(toks, token{tkString, b.String(), i})
			i = j + 1
		case c == '$' || c == '%':
			j := i + 1
			for j < len(src) && isIdentPart(src[j]) {
				j++
			}
			toks = append(toks, token{tkVar, src[i:j], i})
			i = j
		case c == '.':
			toks = append(toks, token{tkDot, ".", i})
			i++
		case c == '(':
			toks = append(toks, token{tkLParen, "(", i})
			i++
		case c == ')':
			toks = append(toks, token{tkRParen, ")", i})
			i++
		case c == ',':
			toks = append(toks, token{tkComma, ",", i})
			i++
		case c == '[':
			toks = append(toks, token{tkLBrack, "[", i})
			i++
		case c == ']':
			toks = append(toks, token{tkRBrack, "]", i})
			i++
		case c == '!' || c == '<' || c == '>':
			if i+1 < len(src) && (src[i+1] == '=' || c == '!' && src[i+1] == '~') {
				toks = append(toks, token{tkOp, src[i : i+2], i})
				i += 2
			} else if c == '!' {
				return nil, fmt.Errorf("unexpected '!' at offset %d", i)
			} else {
				toks = append(toks, token{tkOp, src[i : i+1], i})
				i++
			}
		case strings.IndexByte("|=~+-*/&", c) >= 0:
			toks = append(toks, token{tkOp, src[i : i+1], i})
			i++
		default:
			return nil, fmt.Errorf("unexpected character %q at offset %d", c, i)
		}
	}
	return append(toks, token{kind: tkEOF, pos: len(src)}), nil
}

// ---- parser ----

type parser struct {
	toks     []token
	i        int
	resolves []*resolveStep
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tkEOF {
		p.i++
	}
	return t
}

func (p *parser) expect(k tokKind, what string) (token, error) {
	t := p.next()
	if t.kind != k {
		return t, fmt.Errorf("expected %s at offset %d, found %s", what, t.pos, t)
	}
	return t, nil
}

// binary operator precedences of FHIRPath (higher binds tighter). Those the
// subset does not evaluate have supported false and are rejected.
var binops = map[string]struct {
	prec      int
	supported bool
}{
	"implies": {1, false}, "or": {2, true}, "xor": {2, false}, "and": {3, true},
	"in": {4, false}, "contains": {4, false},
	"=": {5, true}, "!=": {5, true}, "~": {5, false}, "!~": {5, false},
	"<": {6, false}, ">": {6, false}, "<=": {6, false}, ">=": {6, false},
	"|": {7, true}, "is": {8, true}, "as": {8, true},
	"+": {9, false}, "-": {9, false}, "&": {9, false},
	"*": {10, false}, "/": {10, false}, "div": {10, false}, "mod": {10, false},
}

func (p *parser) binop() (string, bool) {
	t := p.peek()
	if t.kind != tkOp && t.kind != tkIdent {
		return "", false
	}
	_, ok := binops[t.text]
	return t.text, ok
}

func (p *parser) expr(minPrec int) (node, error) {
	left, err := p.unary()
	if err != nil {
		return nil, err
	}
	for {
		op, ok := p.binop()
		if !ok {
			return left, nil
		}
		info := binops[op]
		if info.prec < minPrec {
			return left, nil
		}
		t := p.next()
		if !info.supported {
			return nil, fmt.Errorf("operator %q (offset %d) is outside the supported FHIRPath subset", op, t.pos)
		}
		if op == "is" || op == "as" {
			typ, err := p.typeSpec()
			if err != nil {
				return nil, err
			}
			markResolve(left)
			left = &typeOpNode{left: left, typ: typ, cast: op == "as"}
			continue
		}
		right, err := p.expr(info.prec + 1)
		if err != nil {
			return nil, err
		}
		switch op {
		case "|":
			left = &unionNode{left, right}
		case "=", "!=":
			left = &equalNode{left, right, op == "!="}
		case "and", "or":
			left = &logicNode{left, right, op == "and"}
		}
	}
}

func (p *parser) unary() (node, error) {
	if t := p.peek(); t.kind == tkOp && (t.text == "-" || t.text == "+") {
		return nil, fmt.Errorf("unary %q (offset %d) is outside the supported FHIRPath subset", t.text, t.pos)
	}
	return p.postfix()
}

// markResolve records that n, when it is a path ending in resolve(), is
// followed by a type test.
func markResolve(n node) {
	if pe, ok := n.(*pathNode); ok && len(pe.steps) > 0 {
		if r, ok := pe.steps[len(pe.steps)-1].(*resolveStep); ok {
			r.typed = true
		}
	}
}

func (p *parser) typeSpec() (string, error) {
	t, err := p.expect(tkIdent, "a type name")
	if err != nil {
		return "", err
	}
	name := t.text
	if (name == "FHIR" || name == "System") && p.peek().kind == tkDot {
		p.next()
		t, err = p.expect(tkIdent, "a type name")
		if err != nil {
			return "", err
		}
		name = t.text
	}
	return name, nil
}

// postfix parses a term and the invocations and indexers that follow it.
func (p *parser) postfix() (node, error) {
	path := &pathNode{}
	t := p.peek()
	switch t.kind {
	case tkIdent:
		switch t.text {
		case "true", "false":
			p.next()
			path.start = &literalNode{Item{Value: t.text == "true", Type: "boolean"}}
		default:
			s, err := p.invocation(path, true)
			if err != nil {
				return nil, err
			}
			path.add(s)
		}
	case tkString:
		p.next()
		path.start = &literalNode{Item{Value: t.text, Type: "string"}}
	case tkNumber:
		p.next()
		path.start = &literalNode{Item{Value: json.Number(t.text), Type: "decimal"}}
	case tkVar:
		p.next()
		if t.text != "$this" {
			return nil, fmt.Errorf("the variable %s (offset %d) is outside the supported FHIRPath subset", t.text, t.pos)
		}
		path.start = thisNode{}
	case tkLParen:
		p.next()
		inner, err := p.expr(0)
		if err != nil {
			return nil, err
		}
		if _, err := p.expect(tkRParen, "')'"); err != nil {
			return nil, err
		}
		path.start = inner
	default:
		return nil, fmt.Errorf("unexpected %s at offset %d", t, t.pos)
	}
	for {
		switch p.peek().kind {
		case tkDot:
			p.next()
			s, err := p.invocation(path, false)
			if err != nil {
				return nil, err
			}
			path.add(s)
		case tkLBrack:
			p.next()
			n, err := p.expect(tkNumber, "an integer index")
			if err != nil {
				return nil, err
			}
			i, err := strconv.Atoi(n.text)
			if err != nil {
				return nil, fmt.Errorf("index %s is not an integer", n.text)
			}
			if _, err := p.expect(tkRBrack, "']'"); err != nil {
				return nil, err
			}
			path.add(indexStep(i))
		default:
			if path.start != nil && len(path.steps) == 0 {
				return path.start, nil
			}
			return path, nil
		}
	}
}

// invocation parses an identifier or a function call. first is true for the
// first invocation of a path, where a capitalised name is a type filter.
func (p *parser) invocation(path *pathNode, first bool) (step, error) {
	t, err := p.expect(tkIdent, "an element or function name")
	if err != nil {
		return nil, err
	}
	if p.peek().kind != tkLParen {
		if first && t.text[0] >= 'A' && t.text[0] <= 'Z' {
			return typeFilterStep(t.text), nil
		}
		return &memberStep{name: t.text, choice: choiceElements()[t.text]}, nil
	}
	p.next() // (
	name := t.text
	var args []node
	var typ, str string
	switch name {
	case "as", "ofType", "is":
		if typ, err = p.typeSpec(); err != nil {
			return nil, err
		}
	case "extension":
		s, err := p.expect(tkString, "the extension URL as a string literal")
		if err != nil {
			return nil, err
		}
		str = s.text
	default:
		for p.peek().kind != tkRParen {
			if len(args) > 0 {
				if p.peek().kind != tkComma {
					break
				}
				p.next()
			}
			a, err := p.expr(0)
			if err != nil {
				return nil, err
			}
			args = append(args, a)
		}
	}
	if _, err := p.expect(tkRParen, "')'"); err != nil {
		return nil, err
	}
	arity := func(lo, hi int) error {
		if len(args) < lo || len(args) > hi {
			return fmt.Errorf("%s() takes %d to %d arguments, not %d", name, lo, hi, len(args))
		}
		return nil
	}
	switch name {
	case "where":
		if err := arity(1, 1); err != nil {
			return nil, err
		}
		return &whereStep{cond: args[0]}, nil
	case "exists":
		if err := arity(0, 1); err != nil {
			return nil, err
		}
		s := &existsStep{}
		if len(args) == 1 {
			s.cond = args[0]
		}
		return s, nil
	case "empty", "not", "first", "last", "hasValue", "count", "resolve":
		if err := arity(0, 0); err != nil {
			return nil, err
		}
		switch name {
		case "empty":
			return emptyStep{}, nil
		case "not":
			return notStep{}, nil
		case "first":
			return firstStep{}, nil
		case "last":
			return lastStep{}, nil
		case "hasValue":
			return hasValueStep{}, nil
		case "count":
			return countStep{}, nil
		}
		r := &resolveStep{}
		p.resolves = append(p.resolves, r)
		return r, nil
	case "as", "ofType":
		markResolve(path)
		return &ofTypeStep{typ: typ}, nil
	case "is":
		markResolve(path)
		return &isStep{typ: typ}, nil
	case "extension":
		// The element before extension() may be a primitive: read its
		// "_name" companion too.
		if len(path.steps) > 0 {
			if m, ok := path.steps[len(path.steps)-1].(*memberStep); ok {
				m.ext = true
			}
		}
		return &extensionStep{url: str}, nil
	}
	return nil, fmt.Errorf("the function %s() (offset %d) is outside the supported FHIRPath subset", name, t.pos)
}

// ---- nodes ----

// pathNode is a term followed by invocations: start (the focus when nil), then
// each step in turn on the collection reached.
type pathNode struct {
	start node
	steps []step
}

func (n *pathNode) add(s step) { n.steps = append(n.steps, s) }

func (n *pathNode) eval(focus []Item) []Item {
	cur := focus
	if n.start != nil {
		cur = n.start.eval(focus)
	}
	for _, s := range n.steps {
		cur = s.apply(cur)
	}
	return cur
}

type literalNode struct{ it Item }

func (n *literalNode) eval([]Item) []Item { return []Item{n.it} }

type thisNode struct{}

func (thisNode) eval(focus []Item) []Item { return focus }

type unionNode struct{ left, right node }

func (n *unionNode) eval(focus []Item) []Item {
	l := n.left.eval(focus)
	r := n.right.eval(focus)
	if len(l) == 0 {
		return r
	}
	if len(r) == 0 {
		return l
	}
	out := make([]Item, 0, len(l)+len(r))
	return append(append(out, l...), r...)
}

type equalNode struct {
	left, right node
	negate      bool
}

func (n *equalNode) eval(focus []Item) []Item {
	l, r := n.left.eval(focus), n.right.eval(focus)
	if len(l) == 0 || len(r) == 0 {
		return nil
	}
	eq := len(l) == len(r)
	for i := 0; eq && i < len(l); i++ {
		eq = fhir.EqualJSON(l[i].Value, r[i].Value) // the one JSON equality
	}
	return boolean(eq != n.negate)
}

type logicNode struct {
	left, right node
	and         bool
}

func (n *logicNode) eval(focus []Item) []Item {
	l, lok := truth(n.left.eval(focus))
	if lok && l != n.and { // false and …, true or …
		return boolean(l)
	}
	r, rok := truth(n.right.eval(focus))
	switch {
	case rok && r != n.and: // … and false, … or true
		return boolean(r)
	case lok && rok:
		return boolean(r)
	}
	return nil
}

// typeOpNode is "x is T" (a boolean) or "x as T" (the items of x of type T).
type typeOpNode struct {
	left node
	typ  string
	cast bool
}

func (n *typeOpNode) eval(focus []Item) []Item {
	in := n.left.eval(focus)
	if n.cast {
		return ofType(in, n.typ)
	}
	if len(in) != 1 {
		return nil
	}
	return boolean(isType(in[0], n.typ))
}

// ---- steps ----

// typeFilterStep is a leading type name: it keeps the resources of that type
// (any resource for Resource and DomainResource).
type typeFilterStep string

func (s typeFilterStep) apply(in []Item) []Item {
	n := 0
	for _, it := range in {
		if s.match(it) {
			n++
			continue
		}
		break
	}
	if n == len(in) {
		return in
	}
	var out []Item
	for _, it := range in {
		if s.match(it) {
			out = append(out, it)
		}
	}
	return out
}

func (s typeFilterStep) match(it Item) bool {
	m, ok := it.Value.(map[string]any)
	if !ok {
		return false
	}
	rt := it.Type // Extract gives the resource's type with it
	if rt == "" || it.resolved {
		rt, _ = m["resourceType"].(string)
	}
	return rt != "" && (rt == string(s) || s == "Resource" || s == "DomainResource")
}

// memberStep is a child element. choice is set when name is that of an R4
// choice element (value for value[x]); ext when an extension() call follows, so
// that the "_name" companion of a primitive is kept with it.
type memberStep struct {
	name   string
	choice bool
	ext    bool
}

func (s *memberStep) apply(in []Item) []Item {
	var out []Item
	for _, it := range in {
		m, ok := it.Value.(map[string]any)
		if !ok {
			continue
		}
		v, found := m[s.name]
		var companion any
		if s.ext {
			companion = m["_"+s.name]
		}
		if found || companion != nil {
			out = appendChildren(out, v, companion, "")
			continue
		}
		if !s.choice {
			continue
		}
		// A choice element: the name followed by a type suffix.
		for k, cv := range m {
			if len(k) <= len(s.name) || k[:len(s.name)] != s.name {
				continue
			}
			if typ, ok := choiceTypes[k[len(s.name):]]; ok {
				if s.ext {
					companion = m["_"+k]
				}
				out = appendChildren(out, cv, companion, typ)
			}
		}
	}
	return out
}

// appendChildren appends the value(s) of an element, flattening arrays and
// pairing primitives with their "_name" companions.
func appendChildren(out []Item, v, companion any, typ string) []Item {
	if arr, ok := v.([]any); ok {
		exts, _ := companion.([]any)
		for i, x := range arr {
			it := Item{Value: x, Type: typ}
			if i < len(exts) {
				it.Ext, _ = exts[i].(map[string]any)
			}
			if x != nil || it.Ext != nil {
				out = append(out, it)
			}
		}
		return out
	}
	if exts, ok := companion.([]any); ok && v == nil { // only the companion array
		for _, e := range exts {
			if em, ok := e.(map[string]any); ok {
				out = append(out, Item{Ext: em, Type: typ})
			}
		}
		return out
	}
	it := Item{Value: v, Type: typ}
	it.Ext, _ = companion.(map[string]any)
	if v != nil || it.Ext != nil {
		out = append(out, it)
	}
	return out
}

type indexStep int

func (s indexStep) apply(in []Item) []Item {
	if int(s) < len(in) {
		return in[s : s+1]
	}
	return nil
}

type whereStep struct{ cond node }

func (s *whereStep) apply(in []Item) []Item {
	var out []Item
	for i := range in {
		if b, ok := truth(s.cond.eval(in[i : i+1])); ok && b {
			out = append(out, in[i])
		}
	}
	return out
}

type existsStep struct{ cond node }

func (s *existsStep) apply(in []Item) []Item {
	if s.cond == nil {
		return boolean(len(in) > 0)
	}
	for i := range in {
		if b, ok := truth(s.cond.eval(in[i : i+1])); ok && b {
			return boolean(true)
		}
	}
	return boolean(false)
}

type emptyStep struct{}

func (emptyStep) apply(in []Item) []Item { return boolean(len(in) == 0) }

type notStep struct{}

func (notStep) apply(in []Item) []Item {
	if b, ok := truth(in); ok {
		return boolean(!b)
	}
	return nil
}

type firstStep struct{}

func (firstStep) apply(in []Item) []Item {
	if len(in) > 0 {
		return in[:1]
	}
	return nil
}

type lastStep struct{}

func (lastStep) apply(in []Item) []Item {
	if len(in) > 0 {
		return in[len(in)-1:]
	}
	return nil
}

type hasValueStep struct{}

func (hasValueStep) apply(in []Item) []Item {
	if len(in) != 1 {
		return boolean(false)
	}
	switch in[0].Value.(type) {
	case string, bool, json.Number:
		return boolean(true)
	}
	return boolean(false)
}

type countStep struct{}

func (countStep) apply(in []Item) []Item {
	return []Item{{Value: json.Number(strconv.Itoa(len(in))), Type: "integer"}}
}

type ofTypeStep struct{ typ string }

func (s *ofTypeStep) apply(in []Item) []Item { return ofType(in, s.typ) }

type isStep struct{ typ string }

func (s *isStep) apply(in []Item) []Item {
	if len(in) != 1 {
		return nil
	}
	return boolean(isType(in[0], s.typ))
}

type extensionStep struct{ url string }

func (s *extensionStep) apply(in []Item) []Item {
	var out []Item
	for _, it := range in {
		var exts []any
		if m, ok := it.Value.(map[string]any); ok {
			exts, _ = m["extension"].([]any)
		} else if it.Ext != nil {
			exts, _ = it.Ext["extension"].([]any)
		}
		for _, e := range exts {
			if em, ok := e.(map[string]any); ok {
				if u, _ := em["url"].(string); u == s.url {
					out = append(out, Item{Value: em, Type: "Extension"})
				}
			}
		}
	}
	return out
}

// resolveStep stands for the target of each reference, known only by its type
// (read from the reference itself): it is allowed only before a type test.
type resolveStep struct{ typed bool }

func (s *resolveStep) apply(in []Item) []Item {
	var out []Item
	for _, it := range in {
		var ref, typ string
		switch v := it.Value.(type) {
		case map[string]any:
			ref, _ = v["reference"].(string)
			typ, _ = v["type"].(string)
		case string: // canonical or uri
			ref = v
		}
		if t := ReferenceType(ref); t != "" {
			typ = t
		}
		if typ != "" {
			out = append(out, Item{Value: it.Value, Type: typ, resolved: true})
		}
	}
	return out
}

// ---- helpers ----

var (
	trueColl  = []Item{{Value: true, Type: "boolean"}}
	falseColl = []Item{{Value: false, Type: "boolean"}}
)

func boolean(b bool) []Item {
	// The shared slices are never appended to or modified: steps build new
	// slices for their outputs.
	if b {
		return trueColl[:1:1]
	}
	return falseColl[:1:1]
}

// truth is the boolean value of a collection: a single boolean, or true for any
// other single item; ok is false for an empty or plural collection.
func truth(c []Item) (val, ok bool) {
	if len(c) != 1 {
		return false, false
	}
	if b, isBool := c[0].Value.(bool); isBool {
		return b, true
	}
	return true, true
}

func ofType(in []Item, typ string) []Item {
	var out []Item
	all := true
	for _, it := range in {
		if !isType(it, typ) {
			all = false
			break
		}
	}
	if all {
		// Keep the items, but record the type they were cast to.
		for _, it := range in {
			if it.Type == "" {
				out = make([]Item, len(in))
				for i, x := range in {
					if x.Type == "" {
						x.Type = canonicalType(typ)
					}
					out[i] = x
				}
				return out
			}
		}
		return in
	}
	for _, it := range in {
		if isType(it, typ) {
			if it.Type == "" {
				it.Type = canonicalType(typ)
			}
			out = append(out, it)
		}
	}
	return out
}

// isType reports whether it is of type typ (or a specialisation of it). When
// the data does not tell the type, the JSON kind decides: a string is any
// string-like primitive, an object any complex type.
func isType(it Item, typ string) bool {
	if it.resolved {
		return it.Type == typ || typ == "Resource" || typ == "DomainResource"
	}
	if it.Type != "" {
		if strings.EqualFold(it.Type, typ) {
			return true
		}
		for t := it.Type; ; {
			parent, ok := supertypes[canonicalType(t)]
			if !ok {
				return false
			}
			if strings.EqualFold(parent, typ) {
				return true
			}
			t = parent
		}
	}
	switch v := it.Value.(type) {
	case string:
		return stringTypes[strings.ToLower(typ)]
	case bool:
		return strings.EqualFold(typ, "boolean")
	case json.Number:
		return numberTypes[strings.ToLower(typ)]
	case map[string]any:
		if rt, ok := v["resourceType"].(string); ok {
			return rt == typ || typ == "Resource" || typ == "DomainResource"
		}
		return typ != "" && typ[0] >= 'A' && typ[0] <= 'Z' && !stringTypes[strings.ToLower(typ)] && !numberTypes[strings.ToLower(typ)] && !strings.EqualFold(typ, "boolean")
	}
	return false
}

// canonicalType spells a type name as FHIR does: "DateTime" and "dateTime" are
// both "dateTime"; "string" from System.String is "string".
func canonicalType(t string) string {
	if c, ok := choiceTypes[t]; ok {
		return c
	}
	if t != "" && t[0] >= 'a' && t[0] <= 'z' {
		if c, ok := choiceTypes[strings.ToUpper(t[:1])+t[1:]]; ok {
			return c
		}
	}
	return t
}

// choiceTypes maps the suffix of a choice element's JSON name (valueDateTime)
// to the FHIR type it stands for: every R4 data type.
var choiceTypes = map[string]string{}

// supertypes gives the FHIR type each type specialises, where it matters to a
// type test: "as Quantity" keeps an Age, "as uri" a canonical.
var supertypes = map[string]string{
	"Age": "Quantity", "Count": "Quantity", "Distance": "Quantity", "Duration": "Quantity",
	"SimpleQuantity": "Quantity", "MoneyQuantity": "Quantity",
	"code": "string", "id": "string", "markdown": "string",
	"url": "uri", "canonical": "uri", "oid": "uri", "uuid": "uri",
	"positiveInt": "integer", "unsignedInt": "integer",
}

var (
	stringTypes = map[string]bool{}
	numberTypes = map[string]bool{"decimal": true, "integer": true, "positiveint": true, "unsignedint": true, "integer64": true}
)

func init() {
	primitives := []string{"base64Binary", "boolean", "canonical", "code", "date", "dateTime", "decimal", "id",
		"instant", "integer", "markdown", "oid", "positiveInt", "string", "time", "unsignedInt", "uri", "url", "uuid"}
	complexTypes := []string{"Address", "Age", "Annotation", "Attachment", "CodeableConcept", "Coding",
		"ContactDetail", "ContactPoint", "Contributor", "Count", "DataRequirement", "Distance", "Dosage",
		"Duration", "Expression", "HumanName", "Identifier", "Meta", "Money", "ParameterDefinition", "Period",
		"Quantity", "Range", "Ratio", "Reference", "RelatedArtifact", "SampledData", "Signature", "Timing",
		"TriggerDefinition", "UsageContext"}
	for _, t := range primitives {
		choiceTypes[strings.ToUpper(t[:1])+t[1:]] = t
		if t != "boolean" && !numberTypes[strings.ToLower(t)] {
			stringTypes[strings.ToLower(t)] = true
		}
	}
	for _, t := range complexTypes {
		choiceTypes[t] = t
	}
}

// ReferenceType returns the resource type of a literal reference ("Patient/1",
// "http://x/fhir/Patient/1", "Patient/1/_history/2"), or "".
func ReferenceType(ref string) string {
	if ref == "" || ref[0] == '#' || strings.HasPrefix(ref, "urn:") {
		return ""
	}
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	j := strings.LastIndexByte(ref, '/')
	if j <= 0 {
		return ""
	}
	ref = ref[:j]
	t := ref[strings.LastIndexByte(ref, '/')+1:]
	if t == "" || t[0] < 'A' || t[0] > 'Z' {
		return ""
	}
	for i := 1; i < len(t); i++ {
		if !(t[i] >= 'a' && t[i] <= 'z' || t[i] >= 'A' && t[i] <= 'Z') {
			return ""
		}
	}
	return t
}

// rootTypes returns the resource types that the branches of a compiled
// expression start from ("" for a branch that starts elsewhere).
func rootTypes(n node) []string {
	switch x := n.(type) {
	case *unionNode:
		return append(rootTypes(x.left), rootTypes(x.right)...)
	case *typeOpNode:
		return rootTypes(x.left)
	case *equalNode:
		return rootTypes(x.left)
	case *logicNode:
		return append(rootTypes(x.left), rootTypes(x.right)...)
	case *pathNode:
		if x.start != nil {
			return rootTypes(x.start)
		}
		if len(x.steps) > 0 {
			if t, ok := x.steps[0].(typeFilterStep); ok {
				return []string{string(t)}
			}
		}
	}
	return []string{""}
}
