package mapping

import (
	"testing"

	"crs/fhir"
)

// TestCloneIsADeepCopy: a clone encodes as the original does, and changing
// it, however deep, leaves the original as it was.
func TestCloneIsADeepCopy(t *testing.T) {
	body := `{"resourceType":"Patient","identifier":[{"system":"s","value":"1"}],"extension":[{"url":"u","valueCoding":{"code":"E10000031"}}],"multipleBirthInteger":2,"active":true,"period":{"start":"2026-11-20"}}`
	orig, err := fhir.Parse([]byte(body), fhir.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := fhir.Marshal(orig)
	cp := Clone(orig)
	if got, _ := fhir.Marshal(cp); string(got) != string(want) {
		t.Fatalf("clone %s, want %s", got, want)
	}
	AddIdentifier(cp, "s", "2")
	cp["extension"].([]any)[0].(map[string]any)["valueCoding"].(map[string]any)["code"] = "X"
	cp["period"].(map[string]any)["end"] = "2026-11-29"
	cp["active"] = false
	if got, _ := fhir.Marshal(orig); string(got) != string(want) {
		t.Fatalf("changing the clone changed the original: %s, was %s", got, want)
	}
}
