package search

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"unicode"
)

// The FHIRPath subset that search parameter expressions may use. It covers every
// expression of the served types' parameters in R4:
//
//	expr    = branch { " | " branch }
//	branch  = path | "(" path " as " Type ")" | path ".exists() and " path " != false"
//	path    = Root { "." step }              Root is the resource type, Resource or DomainResource
//	step    = name                           a child element; a choice element (value[x]) matches valueQuantity …
//	        | "where(resolve() is " Type ")" references whose target is of Type
//	        | "where(" name "='" literal "')" elements whose child name equals literal
//	        | "as(" Type ")" | "ofType(" Type ")" choice values of Type
//	        | "first()"
//
// Anything else is rejected when the parameter is compiled: the parameter is then
// unsupported and not advertised, never silently empty.

type stepKind int

const (
	stepChild stepKind = iota
	stepResolveIs
	stepWhereEq
	stepAs
	stepFirst
)

type step struct {
	kind    stepKind
	name    string // child name, or the field of where(name='literal')
	typ     string // type of resolve() is / as / ofType
	literal string
}

type branch struct {
	steps  []step
	exists bool // "P.exists() and P != false": yields a boolean token
}

// compiled is a compiled search parameter expression.
type compiled struct {
	branches []branch
}

var (
	nameRe    = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]*$`)
	resolveRe = regexp.MustCompile(`^where\(resolve\(\) is ([A-Za-z]+)\)$`)
	whereEqRe = regexp.MustCompile(`^where\(([a-z][A-Za-z0-9]*)='([^']*)'\)$`)
	asFuncRe  = regexp.MustCompile(`^(?:as|ofType)\(([A-Za-z]+)\)$`)
	asOpRe    = regexp.MustCompile(`^\((.+) as ([A-Za-z]+)\)$`)
	existsRe  = regexp.MustCompile(`^(.+)\.exists\(\) and (.+) != false$`)
)

// compile parses expr for resource type rt.
func compile(rt, expr string) (*compiled, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, fmt.Errorf("no expression")
	}
	c := &compiled{}
	for _, part := range splitTop(expr) {
		part = strings.TrimSpace(part)
		var b branch
		var err error
		if m := asOpRe.FindStringSubmatch(part); m != nil {
			b.steps, err = compilePath(rt, m[1])
			b.steps = append(b.steps, step{kind: stepAs, typ: m[2]})
		} else if m := existsRe.FindStringSubmatch(part); m != nil && m[1] == m[2] {
			b.steps, err = compilePath(rt, m[1])
			b.exists = true
		} else {
			b.steps, err = compilePath(rt, part)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", part, err)
		}
		c.branches = append(c.branches, b)
	}
	return c, nil
}

// splitTop splits expr on " | " outside parentheses.
func splitTop(expr string) []string {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(expr); i++ {
		switch expr[i] {
		case '(':
			depth++
		case ')':
			depth--
		case '|':
			if depth == 0 {
				parts = append(parts, expr[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, expr[start:])
}

// splitSteps splits a path on dots outside parentheses and quotes.
func splitSteps(p string) []string {
	var out []string
	depth, start, quote := 0, 0, false
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '\'':
			quote = !quote
		case quote:
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == '.' && depth == 0:
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return append(out, p[start:])
}

func compilePath(rt, p string) ([]step, error) {
	parts := splitSteps(strings.TrimSpace(p))
	if len(parts) == 0 || (parts[0] != rt && parts[0] != "Resource" && parts[0] != "DomainResource") {
		return nil, fmt.Errorf("path does not start with %s", rt)
	}
	var steps []step
	for _, s := range parts[1:] {
		switch {
		case s == "first()":
			steps = append(steps, step{kind: stepFirst})
		case nameRe.MatchString(s):
			steps = append(steps, step{kind: stepChild, name: s})
		default:
			if m := resolveRe.FindStringSubmatch(s); m != nil {
				steps = append(steps, step{kind: stepResolveIs, typ: m[1]})
			} else if m := whereEqRe.FindStringSubmatch(s); m != nil {
				steps = append(steps, step{kind: stepWhereEq, name: m[1], literal: m[2]})
			} else if m := asFuncRe.FindStringSubmatch(s); m != nil {
				steps = append(steps, step{kind: stepAs, typ: m[1]})
			} else {
				return nil, fmt.Errorf("unsupported FHIRPath step %q", s)
			}
		}
	}
	return steps, nil
}

// node is a value reached by a path, with its FHIR type when the path knows it
// (the suffix of a choice element such as valueQuantity).
type node struct {
	v   any
	typ string
}

// eval evaluates the compiled expression on a resource.
func (c *compiled) eval(res map[string]any) []node {
	var out []node
	for _, b := range c.branches {
		nodes := []node{{v: res}}
		for _, s := range b.steps {
			nodes = apply(nodes, s)
			if len(nodes) == 0 {
				break
			}
		}
		if b.exists {
			// deceased: true when present and not false.
			val := false
			for _, n := range nodes {
				if bv, ok := n.v.(bool); !ok || bv {
					val = true
				}
			}
			if len(nodes) > 0 {
				out = append(out, node{v: val, typ: "boolean"})
			}
			continue
		}
		out = append(out, nodes...)
	}
	return out
}

func apply(nodes []node, s step) []node {
	var out []node
	switch s.kind {
	case stepChild:
		for _, n := range nodes {
			obj, ok := n.v.(map[string]any)
			if !ok {
				continue
			}
			if v, ok := obj[s.name]; ok {
				out = appendFlat(out, v, "")
				continue
			}
			// A choice element: name followed by a type suffix.
			for k, v := range obj {
				if len(k) > len(s.name) && strings.HasPrefix(k, s.name) && unicode.IsUpper(rune(k[len(s.name)])) {
					out = appendFlat(out, v, k[len(s.name):])
				}
			}
		}
	case stepResolveIs:
		for _, n := range nodes {
			obj, ok := n.v.(map[string]any)
			if !ok {
				continue
			}
			ref, _ := obj["reference"].(string)
			if refType(ref) == s.typ {
				out = append(out, n)
			}
		}
	case stepWhereEq:
		for _, n := range nodes {
			if obj, ok := n.v.(map[string]any); ok {
				if v, _ := obj[s.name].(string); v == s.literal {
					out = append(out, n)
				}
			}
		}
	case stepAs:
		for _, n := range nodes {
			if n.typ == "" || strings.EqualFold(n.typ, s.typ) {
				out = append(out, node{v: n.v, typ: s.typ})
			}
		}
	case stepFirst:
		if len(nodes) > 0 {
			out = nodes[:1]
		}
	}
	return out
}

func appendFlat(out []node, v any, typ string) []node {
	if arr, ok := v.([]any); ok {
		for _, x := range arr {
			if x != nil {
				out = append(out, node{v: x, typ: typ})
			}
		}
		return out
	}
	if v == nil {
		return out
	}
	return append(out, node{v: v, typ: typ})
}

// refType returns the resource type of a literal reference ("Patient/1",
// "http://x/fhir/Patient/1", "Patient/1/_history/2"), or "".
func refType(ref string) string {
	if ref == "" || strings.HasPrefix(ref, "#") || strings.HasPrefix(ref, "urn:") {
		return ""
	}
	parts := strings.Split(ref, "/")
	if len(parts) >= 4 && parts[len(parts)-2] == "_history" {
		parts = parts[:len(parts)-2]
	}
	if len(parts) < 2 {
		return ""
	}
	t := parts[len(parts)-2]
	if t == "" || !unicode.IsUpper(rune(t[0])) {
		return ""
	}
	return t
}

// number returns the text of a JSON number value, or "".
func number(v any) string {
	if n, ok := v.(json.Number); ok {
		return string(n)
	}
	return ""
}
