// Package profiles holds the Community Recovery profiles as FHIR conformance
// resources (StructureDefinitions, Extensions, CodeSystems, ValueSets,
// SearchParameters, embedded in the binary) and the validator compiled from them:
// cardinality, fixed and pattern values, slices, required bindings, reference
// target types, and named invariants implemented in Go and keyed by the
// constraint key declared in the StructureDefinitions.
package profiles

import (
	"bytes"
	"embed"
	"fmt"
	"path"
	"sort"
	"strings"

	"crs/fhir"
	"crs/fhir/search"
)

//go:embed resources/*.json
var resourceFiles embed.FS

// DefaultCanonicalBase is the base of the pathway's canonical URLs as authored.
// Set.Load rewrites it to a region's own base.
const DefaultCanonicalBase = "https://community-recovery.example.org/fhir"

// Set is the loaded and compiled conformance resources of the pathway.
type Set struct {
	base        string
	resources   []fhir.Object                // every embedded resource, canonical URLs rewritten
	profiles    map[string]*Profile          // every StructureDefinition by URL (resources and extensions)
	pathway     map[string]*Profile          // the pathway profile of each resource type
	valueSets   map[string]*ValueSet         // by URL
	codeSystems map[string]map[string]string // URL → code → display
	conceptMaps map[string]*ConceptMap       // by URL
}

// Load reads the embedded resources with their canonical URLs under base (the
// default when empty) and compiles the profiles.
func Load(base string) (*Set, error) {
	if base == "" {
		base = DefaultCanonicalBase
	}
	base = strings.TrimSuffix(base, "/")
	s := &Set{base: base, profiles: map[string]*Profile{}, pathway: map[string]*Profile{},
		valueSets: map[string]*ValueSet{}, codeSystems: map[string]map[string]string{}, conceptMaps: map[string]*ConceptMap{}}
	entries, err := resourceFiles.ReadDir("resources")
	if err != nil {
		return nil, err
	}
	var sds []fhir.Object
	for _, e := range entries {
		data, err := resourceFiles.ReadFile(path.Join("resources", e.Name()))
		if err != nil {
			return nil, err
		}
		data = bytes.ReplaceAll(data, []byte(DefaultCanonicalBase), []byte(base))
		obj, err := fhir.Parse(data, fhir.Limits{})
		if err != nil {
			return nil, fmt.Errorf("%s: %v", e.Name(), err)
		}
		s.resources = append(s.resources, obj)
		switch fhir.ResourceType(obj) {
		case "StructureDefinition":
			sds = append(sds, obj)
		case "CodeSystem":
			codes := map[string]string{}
			collectConcepts(codes, obj["concept"])
			s.codeSystems[str(obj["url"])] = codes
		case "ConceptMap":
			s.conceptMaps[str(obj["url"])] = compileConceptMap(obj)
		}
	}
	for _, obj := range s.resources {
		if fhir.ResourceType(obj) == "ValueSet" {
			s.valueSets[str(obj["url"])] = s.expand(obj)
		}
	}
	for _, sd := range sds {
		p, err := newProfile(sd)
		if err != nil {
			return nil, err
		}
		s.profiles[p.URL] = p
	}
	for _, p := range s.profiles {
		if err := s.compile(p); err != nil {
			return nil, err
		}
		if p.Kind == "resource" && strings.HasPrefix(p.URL, base+"/") {
			if other, dup := s.pathway[p.Type]; dup {
				return nil, fmt.Errorf("two pathway profiles for %s: %s and %s", p.Type, other.URL, p.URL)
			}
			s.pathway[p.Type] = p
		}
	}
	return s, nil
}

func collectConcepts(codes map[string]string, v any) {
	list, _ := v.([]any)
	for _, c := range list {
		m, _ := c.(map[string]any)
		codes[str(m["code"])] = str(m["display"])
		collectConcepts(codes, m["concept"])
	}
}

// CanonicalBase is the base of the pathway's canonical URLs.
func (s *Set) CanonicalBase() string { return s.base }

// Resources returns the embedded conformance resources (not to be modified).
func (s *Set) Resources() []fhir.Object { return s.resources }

// Profile returns the StructureDefinition compiled from url.
func (s *Set) Profile(url string) (*Profile, bool) {
	p, ok := s.profiles[url]
	return p, ok
}

// PathwayProfile returns the pathway's profile of a resource type.
func (s *Set) PathwayProfile(resourceType string) (*Profile, bool) {
	p, ok := s.pathway[resourceType]
	return p, ok
}

// PathwayProfiles returns the pathway's resource profiles, sorted by type.
func (s *Set) PathwayProfiles() []*Profile {
	var out []*Profile
	for _, p := range s.pathway {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out
}

// SearchParameters returns the pathway's SearchParameter resources.
func (s *Set) SearchParameters() []fhir.Object {
	var out []fhir.Object
	for _, r := range s.resources {
		if fhir.ResourceType(r) == "SearchParameter" {
			out = append(out, r)
		}
	}
	return out
}

// SearchRegistry returns the search parameters a server of this set serves:
// R4's and the pathway's own.
func (s *Set) SearchRegistry() (*search.Registry, error) {
	params, err := search.New()
	if err != nil {
		return nil, err
	}
	for _, sp := range s.SearchParameters() {
		if err := params.Add(sp); err != nil {
			return nil, fmt.Errorf("search parameter %v: %w", sp["url"], err)
		}
	}
	return params, nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}
