//go:build ignore

// gen writes r4params.json, the search parameters the server embeds: from the
// official R4 search-parameters.json, every parameter of each served resource
// type and the Resource base parameters (_id, _lastUpdated, _profile, _tag,
// _security, _source), with its code, type, url, targets and its FHIRPath
// expression restricted to that type (R4 expressions are unions across types:
// "AllergyIntolerance.code | Condition.code | ..."; each type keeps the
// branches that start from it, or from Resource or DomainResource). Composite
// and special parameters are kept, so that the registry can answer "not
// supported" rather than "unknown". (The names of R4's choice elements, which
// the FHIRPath evaluator needs, are fhir/fhirpath's r4choices.json.)
//
// Run from this directory:
//
//	go generate ./fhir/search/                       (from the module root)
//	go run gen.go -dir ../../../shared/fhir-r4 -out r4params.json
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"crs/fhir"
)

type param struct {
	Base       string   `json:"base"`
	Code       string   `json:"code"`
	Type       string   `json:"type"`
	URL        string   `json:"url"`
	Expression string   `json:"expression,omitempty"`
	Targets    []string `json:"target,omitempty"`
}

// baseParams are the Resource and DomainResource parameters kept: _text,
// _content and _query have no expression and are answered "not supported" by
// the query parser.
var baseParams = map[string]bool{"_id": true, "_lastUpdated": true, "_profile": true, "_tag": true, "_security": true, "_source": true}

func main() {
	dir := flag.String("dir", "../../../shared/fhir-r4", "the directory holding the R4 search-parameters.json, profiles-resources.json and profiles-types.json")
	out := flag.String("out", "r4params.json", "output file")
	flag.Parse()
	data, err := os.ReadFile(filepath.Join(*dir, "search-parameters.json"))
	if err != nil {
		log.Fatal(err)
	}
	var bundle struct {
		Entry []struct {
			Resource struct {
				ResourceType string   `json:"resourceType"`
				URL          string   `json:"url"`
				Code         string   `json:"code"`
				Base         []string `json:"base"`
				Type         string   `json:"type"`
				Expression   string   `json:"expression"`
				Target       []string `json:"target"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(data, &bundle); err != nil {
		log.Fatal(err)
	}
	served := map[string]bool{}
	for _, t := range fhir.ServedTypes() {
		served[t] = true
	}
	var params []param
	seen := map[string]bool{}
	for _, e := range bundle.Entry {
		r := e.Resource
		if r.ResourceType != "SearchParameter" {
			continue
		}
		for _, base := range r.Base {
			switch {
			case base == "Resource" || base == "DomainResource":
				if !baseParams[r.Code] {
					continue
				}
			case !served[base]:
				continue
			}
			key := base + "\x00" + r.Code
			if seen[key] {
				log.Fatalf("%s has two parameters %q", base, r.Code)
			}
			seen[key] = true
			params = append(params, param{Base: base, Code: r.Code, Type: r.Type, URL: r.URL,
				Expression: restrict(r.Expression, base), Targets: r.Target})
		}
	}
	sort.Slice(params, func(i, j int) bool {
		if params[i].Base != params[j].Base {
			return params[i].Base < params[j].Base
		}
		return params[i].Code < params[j].Code
	})
	// One parameter per line: compact, yet readable in a diff.
	var buf bytes.Buffer
	buf.WriteString("{\"params\":[\n")
	for i, p := range params {
		b, err := json.Marshal(p)
		if err != nil {
			log.Fatal(err)
		}
		buf.Write(b)
		if i < len(params)-1 {
			buf.WriteByte(',')
		}
		buf.WriteByte('\n')
	}
	buf.WriteString("]}\n")
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("wrote %d search parameters to %s", len(params), *out)
}

// restrict keeps the branches of a union expression that start from base,
// Resource or DomainResource. It is the generation-time twin of the registry's
// restrictExpression.
func restrict(expr, base string) string {
	var keep []string
	for _, b := range splitUnion(expr) {
		root := strings.TrimLeft(b, "( ")
		j := 0
		for j < len(root) && (root[j] == '_' || root[j] >= 'a' && root[j] <= 'z' || root[j] >= 'A' && root[j] <= 'Z' || root[j] >= '0' && root[j] <= '9') {
			j++
		}
		name := root[:j]
		if name == "" || name[0] < 'A' || name[0] > 'Z' || name == base || name == "Resource" || name == "DomainResource" {
			keep = append(keep, b)
		}
	}
	return strings.Join(keep, " | ")
}

// splitUnion splits expr on "|" outside parentheses, brackets and quotes.
func splitUnion(expr string) []string {
	var parts []string
	depth, start := 0, 0
	var quote byte
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '`':
			quote = c
		case c == '(' || c == '[':
			depth++
		case c == ')' || c == ']':
			depth--
		case c == '|' && depth == 0:
			parts = append(parts, strings.TrimSpace(expr[start:i]))
			start = i + 1
		}
	}
	if last := strings.TrimSpace(expr[start:]); last != "" || len(parts) > 0 {
		parts = append(parts, last)
	}
	return parts
}
