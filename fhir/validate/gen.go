//go:build ignore

// gen derives the embedded base-validation table from the official R4
// StructureDefinitions and value sets, r4table.json.gz: for every resource and
// complex data type, each element's cardinality, types (with the target types of
// a Reference), contentReference, required binding and constraint keys; every
// primitive type's JSON type, regular expression and maximum length; every
// constraint's key, severity, text and expression; and the codes of every
// required value set that can be expanded from the R4 value sets.
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
	Targets  []string `json:"tg,omitempty"` // resource types a Reference may point to (none: any)
	Keys     []string `json:"k,omitempty"`  // constraint keys declared on this element by its own structure
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
	Primitives map[string]primitive           `json:"primitives"`
	// Constraints are the invariants the R4 structures declare, by key (the same
	// key may be declared on several structures: the first declaration is kept).
	Constraints map[string]constraint `json:"constraints"`
	RootKeys    map[string][]string   `json:"rootKeys"` // structure → the keys declared on its root
}

// primitive is how a primitive type is written in JSON: the JSON type and the
// spec's regular expression for its lexical form.
type primitive struct {
	JSON  string `json:"json"` // string, number or boolean
	Regex string `json:"regex,omitempty"`
	Max   int    `json:"max,omitempty"` // maxLength, in characters
}

type constraint struct {
	Severity   string `json:"severity"`
	Human      string `json:"human"`
	Expression string `json:"expression"`
	Path       string `json:"path"`
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
	t := table{Structures: map[string][]element{}, Kinds: map[string]string{}, ValueSets: map[string]map[string][]string{},
		Primitives: map[string]primitive{}, Constraints: map[string]constraint{}, RootKeys: map[string][]string{}}
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
						MaxLength        int    `json:"maxLength"`
						Type             []struct {
							Code          string   `json:"code"`
							TargetProfile []string `json:"targetProfile"`
							Extension     []struct {
								URL         string `json:"url"`
								ValueURL    string `json:"valueUrl"`
								ValueString string `json:"valueString"`
							} `json:"extension"`
						} `json:"type"`
						Constraint []struct {
							Key        string `json:"key"`
							Severity   string `json:"severity"`
							Human      string `json:"human"`
							Expression string `json:"expression"`
							Source     string `json:"source"`
						} `json:"constraint"`
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
			if sd.Kind == "primitive-type" {
				p := primitive{JSON: "string"}
				for _, el := range sd.Snapshot.Element {
					if el.Path != sd.Type+".value" || len(el.Type) == 0 {
						continue
					}
					p.Max = el.MaxLength
					for _, x := range el.Type[0].Extension {
						if strings.HasSuffix(x.URL, "/regex") {
							p.Regex = x.ValueString
						}
					}
				}
				switch sd.Type {
				case "boolean":
					p.JSON = "boolean"
				case "integer", "positiveInt", "unsignedInt", "decimal":
					p.JSON = "number"
				}
				t.Primitives[sd.Type] = p
				continue
			}
			if sd.Kind == "logical" {
				continue
			}
			var els []element
			for i, el := range sd.Snapshot.Element {
				if i == 0 {
					// The root: its constraints, with those of the type it
					// specializes (an Age is a Quantity: qty-3 applies).
					var keys []string
					for _, c := range el.Constraint {
						if c.Key != "ele-1" {
							keys = append(keys, c.Key)
							if _, ok := t.Constraints[c.Key]; !ok {
								t.Constraints[c.Key] = constraint{Severity: c.Severity, Human: c.Human, Expression: c.Expression, Path: el.Path}
							}
						}
					}
					if len(keys) > 0 {
						t.RootKeys[sd.Type] = keys
					}
					continue
				}
				x := element{Path: el.Path, Min: el.Min, Max: el.Max, Ref: strings.TrimPrefix(el.ContentReference, "#"), Summary: el.IsSummary}
				for _, ty := range el.Type {
					code := ty.Code
					if strings.HasPrefix(code, "http://hl7.org/fhirpath/System.") {
						// id, Extension.url …: the FHIR type is in an extension.
						code = "string"
						for _, e := range ty.Extension {
							if strings.HasSuffix(e.URL, "/structuredefinition-fhir-type") && e.ValueURL != "" {
								code = e.ValueURL
							}
						}
						if strings.Count(el.Path, ".") == 1 && strings.HasSuffix(el.Path, ".id") && sd.Kind == "resource" {
							code = "id" // Resource.id is an id, whatever the extension says
						}
					}
					x.Types = append(x.Types, code)
					if code == "Reference" {
						for _, tp := range ty.TargetProfile {
							x.Targets = append(x.Targets, strings.TrimPrefix(tp, "http://hl7.org/fhir/StructureDefinition/"))
						}
					}
				}
				for _, c := range el.Constraint {
					if !strings.HasSuffix(c.Source, "/"+sd.Type) && c.Source != "" {
						continue // inherited: checked where it is declared
					}
					x.Keys = append(x.Keys, c.Key)
					if _, ok := t.Constraints[c.Key]; !ok {
						t.Constraints[c.Key] = constraint{Severity: c.Severity, Human: c.Human, Expression: c.Expression, Path: el.Path}
					}
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
	out, _ := json.Marshal(t)
	writeGz("r4table.json.gz", out)
	log.Printf("%d structures, %d required value sets enforced, %d not expandable locally", len(t.Structures), len(t.ValueSets), len(t.Skipped))
}
