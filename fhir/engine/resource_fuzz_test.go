package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"crs/fhir"
	"crs/fhir/engine"
)

// FuzzResource feeds arbitrary resource bodies to create: never an internal
// error (a 5xx) for client input, nothing stored when the body is refused, and
// what is stored is valid and reads back as sent (but for the server's own id
// and meta fields). Seeds: the R4 examples in testdata/resource-seeds, which
// must be accepted, and one body per class of bad input.
func FuzzResource(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "resource-seeds", "*.json"))
	if len(seeds) == 0 {
		f.Fatal("no seeds")
	}
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		`{"resourceType":"Patient","name":[["Smith"]]}`, `{"resourceType":"Patient","meta":"x"}`,
		`{"resourceType":"Patient","multipleBirthInteger":1e400}`, `{"resourceType":"Patient","birthDate":"2026-02-30"}`,
		`{"resourceType":"Patient","name":[{"given":["a"],"_given":[null,{"id":"x"}]}]}`, `{"resourceType":"Patient","_birthDate":{}}`,
		`{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o","name":"x"}]}`,
		`{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><script>x</script></div>"}}`,
		`{"resourceType":"Encounter","status":"finished","class":{"code":"HH"},"period":{"start":"2026-02-01","end":"2026-01-31"}}`,
		`{"resourceType":"Patient","generalPractitioner":[{"reference":"Patient/2"}]}`, "{\"resourceType\":\"Patient\",\"id\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	st, v := openStore(f)
	eng := engine.New(engine.Config{Store: st, Validator: v, Elements: v, Base: "http://fuzz/fhir"})
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, body []byte) {
		rt := "Patient"
		if obj, err := fhir.Parse(body, fhir.DefaultLimits); err == nil && fhir.Allows(fhir.ResourceType(obj), fhir.Create) {
			rt = fhir.ResourceType(obj)
		}
		before, err := eng.History(ctx, "", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := eng.Create(ctx, rt, body, "")
		if err != nil {
			if fhir.KindOf(err) == fhir.Internal {
				t.Fatalf("internal error for client input: %v", err)
			}
			after, err := eng.History(ctx, "", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			if *after.Total != *before.Total {
				t.Fatalf("a refused resource stored %d versions", *after.Total-*before.Total)
			}
			return
		}
		stored, err := fhir.Parse(res.Version.Body, fhir.Limits{})
		if err != nil {
			t.Fatalf("stored body does not parse: %v", err)
		}
		for _, is := range v.Validate(stored) {
			if is.Severity == fhir.SeverityError {
				t.Fatalf("stored an invalid resource: %+v", is)
			}
		}
		sent, _ := fhir.Parse(body, fhir.Limits{})
		strip(sent)
		strip(stored)
		if !reflect.DeepEqual(sent, stored) {
			a, _ := fhir.Marshal(sent)
			b, _ := fhir.Marshal(stored)
			t.Fatalf("stored differs from sent:\n%s\n%s", a, b)
		}
	})
}

// strip removes what the server owns: id, meta.versionId, meta.lastUpdated.
func strip(obj map[string]any) {
	delete(obj, "id")
	if meta, ok := obj["meta"].(map[string]any); ok {
		delete(meta, "versionId")
		delete(meta, "lastUpdated")
		if len(meta) == 0 {
			delete(obj, "meta")
		}
	}
}

// TestResourceSeedsRoundTrip: the valid seeds of FuzzResource are accepted and
// read back unchanged (the fuzz target alone would also pass if they were
// refused).
func TestResourceSeedsRoundTrip(t *testing.T) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "resource-seeds", "*.json"))
	st, v := openStore(t)
	eng := engine.New(engine.Config{Store: st, Validator: v, Elements: v, Base: "http://fuzz/fhir"})
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		sent, err := fhir.Parse(data, fhir.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		res, err := eng.Create(context.Background(), fhir.ResourceType(sent), data, "")
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		got, err := eng.Read(context.Background(), res.Version.Type, res.Version.ID)
		if err != nil {
			t.Fatal(err)
		}
		stored, _ := fhir.Parse(got.Body, fhir.Limits{})
		strip(sent)
		strip(stored)
		if !reflect.DeepEqual(sent, stored) {
			t.Fatalf("%s: read back differs", s)
		}
	}
}
