package validate

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"crs/fhir"
)

// TestAgreementWithReferenceValidator runs the HL7 fhir-test-cases validator
// cases selected into testdata/fhir-test-cases (R4 JSON of the served types
// that need no packages or profiles; see its README) and compares each verdict
// with the reference Java validator's: invalid when it reports any error. It
// prints the agreement and fails below 98%.
func TestAgreementWithReferenceValidator(t *testing.T) {
	dir := filepath.Join("testdata", "fhir-test-cases")
	data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Commit string `json:"commit"`
		Cases  []struct {
			Name     string   `json:"name"`
			File     string   `json:"file"`
			Errors   int      `json:"errors"`
			Messages []string `json:"messages"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	agree := 0
	for _, c := range m.Cases {
		body, err := os.ReadFile(filepath.Join(dir, c.File))
		if err != nil {
			t.Fatal(err)
		}
		// Some cases start with a UTF-8 byte order mark, which the reference
		// validator skips; crs refuses one as malformed JSON, which would make
		// the case pass for a reason that is not its point.
		body = bytes.TrimPrefix(body, []byte("\xef\xbb\xbf"))
		var errs []fhir.Issue
		obj, perr := fhir.Parse(body, fhir.DefaultLimits)
		if perr != nil {
			errs = fhir.AsError(perr).Issues
		} else {
			errs = errorsOf(v.Validate(obj))
		}
		want, got := c.Errors > 0, len(errs) > 0
		var ours []string
		for _, e := range errs {
			ours = append(ours, e.Expression+": "+e.Diagnostics)
		}
		if want == got {
			agree++
			if got {
				t.Logf("both invalid: %s\n  reference: %s\n  crs: %s", c.Name, strings.Join(c.Messages, "; "), strings.Join(ours, "; "))
			}
			continue
		}
		t.Logf("disagree on %s: reference validator %v, crs %v\n  reference: %s\n  crs: %s", c.Name, verdict(want), verdict(got),
			strings.Join(c.Messages, "; "), strings.Join(ours, "; "))
	}
	pct := 100 * float64(agree) / float64(len(m.Cases))
	t.Logf("agreement with the reference validator: %d of %d cases (%.1f%%), fhir-test-cases %s", agree, len(m.Cases), pct, m.Commit)
	if len(m.Cases) < 15 {
		t.Fatalf("only %d cases", len(m.Cases))
	}
	if pct < 98 {
		t.Fatalf("agreement %.1f%% is below 98%%", pct)
	}
}

func verdict(invalid bool) string {
	if invalid {
		return "invalid"
	}
	return "valid"
}
