//go:build ignore

// gen writes compartments.json: the R4 CompartmentDefinitions (Patient,
// Encounter, RelatedPerson, Practitioner, Device) restricted to the served
// types, from the official profiles-resources.json. Run `go generate ./fhir/engine/`.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"os"
	"path/filepath"

	"crs/fhir"
)

func main() {
	dir := flag.String("src", "../../../shared/fhir-r4", "the shared R4 definitions")
	flag.Parse()
	data, err := os.ReadFile(filepath.Join(*dir, "profiles-resources.json"))
	if err != nil {
		log.Fatal(err)
	}
	var b struct {
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		log.Fatal(err)
	}
	out := map[string]map[string][]string{}
	for _, e := range b.Entry {
		var r struct {
			ResourceType string `json:"resourceType"`
			Code         string `json:"code"`
			Resource     []struct {
				Code  string   `json:"code"`
				Param []string `json:"param"`
			} `json:"resource"`
		}
		var head struct {
			ResourceType string `json:"resourceType"`
		}
		if json.Unmarshal(e.Resource, &head) != nil || head.ResourceType != "CompartmentDefinition" {
			continue
		}
		if err := json.Unmarshal(e.Resource, &r); err != nil {
			log.Fatal(err)
		}
		if !fhir.Served(r.Code) {
			continue
		}
		out[r.Code] = map[string][]string{}
		for _, x := range r.Resource {
			var params []string
			for _, p := range x.Param {
				if p != "{def}" { // the compartment's own resource: matched by id
					params = append(params, p)
				}
			}
			if fhir.Served(x.Code) && len(params) > 0 {
				out[r.Code][x.Code] = params
			}
		}
	}
	js, _ := json.MarshalIndent(out, "", " ")
	if err := os.WriteFile("compartments.json", append(js, '\n'), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("wrote %d compartments", len(out))
}
