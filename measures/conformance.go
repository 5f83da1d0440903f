package measures

import (
	"embed"
	"fmt"
	"path"

	"crs/fhir"
	"crs/fhir/engine"
)

//go:embed resources/*.json
var resourceFiles embed.FS

// Definitions returns the embedded Measure resources, in file order.
func Definitions() ([]fhir.Object, error) {
	entries, err := resourceFiles.ReadDir("resources")
	if err != nil {
		return nil, err
	}
	var out []fhir.Object
	for _, e := range entries {
		data, err := resourceFiles.ReadFile(path.Join("resources", e.Name()))
		if err != nil {
			return nil, err
		}
		obj, err := fhir.Parse(data, fhir.Limits{})
		if err != nil {
			return nil, fmt.Errorf("%s: %v", e.Name(), err)
		}
		if err := checkRules(obj); err != nil {
			return nil, fmt.Errorf("%s: %v", e.Name(), err)
		}
		out = append(out, obj)
	}
	return out, nil
}

// profilesWithMeasures is the pathway's profiles plus the Measures, so that the
// engine installs the Measures with the other conformance resources at start
// and the API serves them read-only.
type profilesWithMeasures struct {
	engine.Profiles
	measures []fhir.Object
}

// Resources returns the profiles' conformance resources and the Measures.
func (p profilesWithMeasures) Resources() []fhir.Object {
	return append(append([]fhir.Object{}, p.Profiles.Resources()...), p.measures...)
}

// WithMeasures returns p with the embedded Measures added to the conformance
// resources the engine installs (engine.Engine.InstallConformance).
func WithMeasures(p engine.Profiles) (engine.Profiles, error) {
	ms, err := Definitions()
	if err != nil {
		return nil, err
	}
	return profilesWithMeasures{Profiles: p, measures: ms}, nil
}
