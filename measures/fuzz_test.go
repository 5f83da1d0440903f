package measures

import (
	"testing"

	"crs/fhir"
	"crs/fhir/engine"
)

// FuzzParseRequest feeds arbitrary query strings to the $evaluate-measure
// parameter parser: every one is accepted with a sane period or refused with
// a client error, never a panic or an internal error.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		"periodStart=2026-06-01&periodEnd=2026-11-29",
		"periodStart=2026-06&periodEnd=2026&reportType=subject-list",
		"periodStart=2026-06-01T00:00:00Z&periodEnd=2026-06-01T00:00:00%2B01:00",
		"periodStart=2026-13-01&periodEnd=2026-11-29",
		"periodStart=&periodEnd=",
		"reportType=individual",
		"periodStart=2026-06-01&periodStart=2026-06-02",
		"periodStart=0000&periodEnd=9999",
		"subject=Patient/1",
		"%zz=1",
	} {
		f.Add("crs-care-start-3-days", s)
	}
	f.Add("bad$id", "periodStart=2026-06-01&periodEnd=2026-11-29")
	f.Fuzz(func(t *testing.T, id, qs string) {
		params, err := engine.ParseQueryString(qs)
		if err != nil {
			return
		}
		req, err := ParseRequest(id, params)
		if err != nil {
			if k := fhir.KindOf(err); k == fhir.Internal {
				t.Fatalf("internal error for %q: %v", qs, err)
			}
			return
		}
		if !req.Start.Before(req.End) {
			t.Fatalf("accepted an empty period for %q: %v – %v", qs, req.Start, req.End)
		}
	})
}
