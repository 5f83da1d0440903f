//go:build ignore

// gen derives the embedded base-validation data from the official R4 files:
//
//   - r4schema.json.gz: fhir.schema.json with ResourceList (the 146-way oneOf
//     used by contained and Bundle.entry.resource) replaced by "any object":
//     crs validates such nested resources against their own type instead;
//   - r4table.json.gz: for every resource and complex data type, each element's
//     cardinality, types, contentReference and required binding, plus the codes
//     of every required value set that can be expanded from the R4 value sets.
//
// Run with `go generate ./fhir/validate/`.
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

type element struct {
	Path     string   `json:"p"`
	Min      int      `json:"min,omitempty"`
	Max      string   `json:"max"`
	Types    []string `json:"t,omitempty"`
	Ref      string   `json:"ref,omitempty"` // contentReference without '#'
	Required string   `json:"vs,omitempty"`  // required binding value set
	Summary  bool     `json:"s,omitempty"`   // isSummary
}

type table struct {
	Structures map[string][]element           `json:"structures"`
	Kinds      map[string]string              `json:"kinds"`     // name → resource | complex-type | primitive-type
	ValueSets  map[string]map[string][]string `json:"valueSets"` // url → system → codes
	Skipped    []string                       `json:"skipped"`   // required value sets that cannot be expanded locally
}

type bundle struct {
	Entry []struct {
		Resource json.RawMessage `json:"resource"`
	} `json:"entry"`
}

func read(dir, name string) bundle {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		log.Fatal(err)
	}
	var b bundle
	if err := json.Unmarshal(data, &b); err != nil {
		log.Fatal(err)
	}
	return b
}

func writeGz(name string, data []byte) {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(data)
	zw.Close()
	if err := os.WriteFile(name, buf.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("wrote %s (%d bytes, %d uncompressed)", name, buf.Len(), len(data))
}

func main() {
	dir := flag.String("src", "../../../shared/fhir-r4", "the shared R4 definitions")
	flag.Parse()

	// The schema, without the root oneOf's twin inside ResourceList.
	raw, err := os.ReadFile(filepath.Join(*dir, "fhir.schema.json"))
	if err != nil {
		log.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		log.Fatal(err)
	}
	delete(schema, "oneOf")
	delete(schema, "discriminator")
	schema["definitions"].(map[string]any)["ResourceList"] = map[string]any{"type": "object"}
	// The published R4 schema was built before the 4.0.1 technical correction:
	// its fhirVersion enums stop at 4.0.0, while R4's FHIR-version value set (and
	// every 4.0.1 conformance resource, UK Core's included) has 4.0.1.
	for _, def := range schema["definitions"].(map[string]any) {
		props, _ := def.(map[string]any)["properties"].(map[string]any)
		if fv, ok := props["fhirVersion"].(map[string]any); ok {
			if enum, ok := fv["enum"].([]any); ok {
				fv["enum"] = append(enum, "4.0.1")
			}
		}
	}
	out, _ := json.Marshal(schema)
	writeGz("r4schema.json.gz", out)

	// Value sets and code systems.
	codeSystems := map[string][]string{}
	valueSets := map[string]map[string]any{}
	var collect func(concepts []any, into *[]string)
	collect = func(concepts []any, into *[]string) {
		for _, c := range concepts {
			m := c.(map[string]any)
			*into = append(*into, m["code"].(string))
			if sub, ok := m["concept"].([]any); ok {
				collect(sub, into)
			}
		}
	}
	for _, name := range []string{"valuesets.json", "profiles-resources.json"} {
		for _, e := range read(*dir, name).Entry {
			var r map[string]any
			json.Unmarshal(e.Resource, &r)
			switch r["resourceType"] {
			case "CodeSystem":
				if r["content"] != "complete" {
					continue
				}
				var codes []string
				if cs, ok := r["concept"].([]any); ok {
					collect(cs, &codes)
				}
				codeSystems[r["url"].(string)] = codes
			case "ValueSet":
				valueSets[r["url"].(string)] = r
			}
		}
	}
	t := table{Structures: map[string][]element{}, Kinds: map[string]string{}, ValueSets: map[string]map[string][]string{}}
	var expand func(url string, depth int) (map[string][]string, bool)
	expand = func(url string, depth int) (map[string][]string, bool) {
		url, _, _ = strings.Cut(url, "|")
		vs, ok := valueSets[url]
		if !ok || depth > 5 {
			return nil, false
		}
		compose, ok := vs["compose"].(map[string]any)
		if !ok {
			return nil, false
		}
		if _, hasExclude := compose["exclude"]; hasExclude {
			return nil, false
		}
		out := map[string][]string{}
		includes, _ := compose["include"].([]any)
		for _, inc := range includes {
			m := inc.(map[string]any)
			if _, ok := m["filter"]; ok {
				return nil, false
			}
			if refs, ok := m["valueSet"].([]any); ok {
				for _, r := range refs {
					sub, ok := expand(r.(string), depth+1)
					if !ok {
						return nil, false
					}
					for s, codes := range sub {
						out[s] = append(out[s], codes...)
					}
				}
			}
			system, _ := m["system"].(string)
			if system == "" {
				continue
			}
			if concepts, ok := m["concept"].([]any); ok {
				for _, c := range concepts {
					out[system] = append(out[system], c.(map[string]any)["code"].(string))
				}
				continue
			}
			codes, ok := codeSystems[system]
			if !ok {
				return nil, false
			}
			out[system] = append(out[system], codes...)
		}
		return out, len(out) > 0
	}

	skipped := map[string]bool{}
	for _, name := range []string{"profiles-types.json", "profiles-resources.json"} {
		for _, e := range read(*dir, name).Entry {
			var sd struct {
				ResourceType string `json:"resourceType"`
				Name         string `json:"name"`
				Type         string `json:"type"`
				Kind         string `json:"kind"`
				Derivation   string `json:"derivation"`
				Abstract     bool   `json:"abstract"`
				Snapshot     struct {
					Element []struct {
						Path             string `json:"path"`
						Min              int    `json:"min"`
						Max              string `json:"max"`
						ContentReference string `json:"contentReference"`
						IsSummary        bool   `json:"isSummary"`
						Type             []struct {
							Code string `json:"code"`
						} `json:"type"`
						Binding *struct {
							Strength string `json:"strength"`
							ValueSet string `json:"valueSet"`
						} `json:"binding"`
					} `json:"element"`
				} `json:"snapshot"`
			}
			json.Unmarshal(e.Resource, &sd)
			if sd.ResourceType != "StructureDefinition" || sd.Derivation == "constraint" {
				continue
			}
			t.Kinds[sd.Type] = sd.Kind
			if sd.Kind == "primitive-type" || sd.Kind == "logical" {
				continue
			}
			var els []element
			for i, el := range sd.Snapshot.Element {
				if i == 0 {
					continue // the root
				}
				x := element{Path: el.Path, Min: el.Min, Max: el.Max, Ref: strings.TrimPrefix(el.ContentReference, "#"), Summary: el.IsSummary}
				for _, ty := range el.Type {
					x.Types = append(x.Types, ty.Code)
				}
				if b := el.Binding; b != nil && b.Strength == "required" && b.ValueSet != "" {
					url, _, _ := strings.Cut(b.ValueSet, "|")
					if codes, ok := expand(url, 0); ok {
						x.Required = url
						t.ValueSets[url] = codes
					} else {
						skipped[url] = true
					}
				}
				els = append(els, x)
			}
			t.Structures[sd.Type] = els
		}
	}
	for u := range skipped {
		t.Skipped = append(t.Skipped, u)
	}
	sort.Strings(t.Skipped)
	for _, codes := range t.ValueSets {
		for s := range codes {
			sort.Strings(codes[s])
		}
	}
	out, _ = json.Marshal(t)
	writeGz("r4table.json.gz", out)
	log.Printf("%d structures, %d required value sets enforced, %d not expandable locally", len(t.Structures), len(t.ValueSets), len(t.Skipped))
}
