//go:build ignore

// gen derives elementorder.json.gz, the order of the elements of every R4
// resource and complex data type, from the snapshots of the official R4
// StructureDefinitions (profiles-resources.json and profiles-types.json):
// for each type, and for each of its backbone elements, the child elements in
// the order of the definition, each with the context of its own children.
//
// Run with `go generate ./fhir/`.
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"log"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	dir := flag.String("src", "../../shared/fhir-r4", "the shared R4 definitions")
	out := flag.String("out", "elementorder.json.gz", "the table to write")
	flag.Parse()
	// table: context (a type name, or the path of a backbone element) → its
	// children in order, each [name, context of the child's children].
	table := map[string][][2]string{}
	for _, f := range []string{"profiles-types.json", "profiles-resources.json"} {
		data, err := os.ReadFile(filepath.Join(*dir, f))
		if err != nil {
			log.Fatal(err)
		}
		var b struct {
			Entry []struct {
				Resource struct {
					ResourceType string `json:"resourceType"`
					Kind         string `json:"kind"`
					Derivation   string `json:"derivation"`
					Snapshot     struct {
						Element []struct {
							Path             string `json:"path"`
							ContentReference string `json:"contentReference"`
							Type             []struct {
								Code string `json:"code"`
							} `json:"type"`
						} `json:"element"`
					} `json:"snapshot"`
				} `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(data, &b); err != nil {
			log.Fatal(err)
		}
		for _, e := range b.Entry {
			sd := e.Resource
			if sd.ResourceType != "StructureDefinition" || (sd.Derivation != "specialization" && sd.Derivation != "") || (sd.Kind != "resource" && sd.Kind != "complex-type") {
				continue
			}
			for _, el := range sd.Snapshot.Element {
				i := strings.LastIndexByte(el.Path, '.')
				if i < 0 {
					continue // the root
				}
				parent, name := el.Path[:i], el.Path[i+1:]
				ctx := ""
				switch {
				case el.ContentReference != "":
					ctx = strings.TrimPrefix(el.ContentReference, "#")
				case strings.HasSuffix(name, "[x]"):
					// The context follows the type named in the JSON key.
				case len(el.Type) == 1 && (el.Type[0].Code == "BackboneElement" || el.Type[0].Code == "Element"):
					ctx = el.Path
				case len(el.Type) == 1 && el.Type[0].Code != "" && el.Type[0].Code[0] >= 'A' && el.Type[0].Code[0] <= 'Z':
					ctx = el.Type[0].Code
				}
				table[parent] = append(table[parent], [2]string{name, ctx})
			}
		}
	}
	data, err := json.Marshal(table)
	if err != nil {
		log.Fatal(err)
	}
	var buf bytes.Buffer
	z, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	z.Write(data)
	z.Close()
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("%d contexts, %d bytes (%d compressed)", len(table), len(data), buf.Len())
}
