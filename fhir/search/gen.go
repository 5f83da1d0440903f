//go:build ignore

// gen writes r4params.json: the R4 search parameters of the served resource
// types, with each expression restricted to its type, from the official
// search-parameters.json. Run with `go generate ./fhir/search/`.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"os"
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

func main() {
	src := flag.String("src", "../../../shared/fhir-r4/search-parameters.json", "the R4 search-parameters.json")
	out := flag.String("out", "r4params.json", "output file")
	flag.Parse()
	data, err := os.ReadFile(*src)
	if err != nil {
		log.Fatal(err)
	}
	var bundle struct {
		Entry []struct {
			Resource struct {
				URL        string   `json:"url"`
				Code       string   `json:"code"`
				Base       []string `json:"base"`
				Type       string   `json:"type"`
				Expression string   `json:"expression"`
				Target     []string `json:"target"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(data, &bundle); err != nil {
		log.Fatal(err)
	}
	served := map[string]bool{"Resource": true, "DomainResource": true}
	for _, t := range fhir.ServedTypes() {
		served[t] = true
	}
	var params []param
	for _, e := range bundle.Entry {
		r := e.Resource
		for _, base := range r.Base {
			if !served[base] {
				continue
			}
			var mine []string
			for _, branch := range strings.Split(r.Expression, " | ") {
				b := strings.TrimSpace(branch)
				if strings.HasPrefix(strings.TrimLeft(b, "("), base+".") {
					mine = append(mine, b)
				}
			}
			var targets []string
			for _, t := range r.Target {
				if served[t] {
					targets = append(targets, t)
				}
			}
			if r.Type == "reference" && len(targets) == 0 {
				targets = r.Target // a reference to types not served is still a reference
			}
			params = append(params, param{Base: base, Code: r.Code, Type: r.Type, URL: r.URL, Expression: strings.Join(mine, " | "), Targets: targets})
		}
	}
	sort.Slice(params, func(i, j int) bool {
		if params[i].Base != params[j].Base {
			return params[i].Base < params[j].Base
		}
		return params[i].Code < params[j].Code
	})
	b, err := json.MarshalIndent(params, "", " ")
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("wrote %d search parameters to %s", len(params), *out)
}
