//go:build ignore

// gen writes r4choices.json, the names (less "[x]") of the choice elements of
// every R4 resource and data type (value, deceased, occurrence, ...), from the
// official profiles-resources.json and profiles-types.json: the evaluator looks
// for valueQuantity and the like only under these names.
//
// Run with `go generate ./fhir/fhirpath/` (make generate).
package main

import (
	"encoding/json"
	"flag"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	dir := flag.String("dir", "../../../shared/fhir-r4", "the shared R4 definitions")
	out := flag.String("out", "r4choices.json", "the file to write")
	flag.Parse()
	choices, err := choiceElements(*dir)
	if err != nil {
		log.Fatal(err)
	}
	b, err := json.Marshal(choices)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("wrote %d choice element names to %s", len(choices), *out)
}

// choiceElements returns the names, less "[x]", of the choice elements of every
// R4 resource and data type (value, deceased, occurrence, ...): the FHIRPath
// evaluator looks for valueQuantity and the like only under these names.
func choiceElements(dir string) ([]string, error) {
	set := map[string]bool{}
	for _, f := range []string{"profiles-resources.json", "profiles-types.json"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return nil, err
		}
		var bundle struct {
			Entry []struct {
				Resource struct {
					ResourceType string `json:"resourceType"`
					Snapshot     struct {
						Element []struct {
							Path string `json:"path"`
						} `json:"element"`
					} `json:"snapshot"`
				} `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(data, &bundle); err != nil {
			return nil, err
		}
		for _, e := range bundle.Entry {
			if e.Resource.ResourceType != "StructureDefinition" {
				continue
			}
			for _, el := range e.Resource.Snapshot.Element {
				if name, ok := strings.CutSuffix(el.Path, "[x]"); ok {
					set[name[strings.LastIndexByte(name, '.')+1:]] = true
				}
			}
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}
