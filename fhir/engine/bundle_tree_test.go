package engine_test

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/search"
)

const treeBundle = `{"resourceType":"Bundle","type":"transaction","entry":[
 {"fullUrl":"urn:uuid:4f1e7a3c-0c9e-4b62-9e2b-3e0b8e5f1a2d","resource":{"resourceType":"Patient","gender":"female","birthDate":"1941-03-14","identifier":[{"value":"9000000009","system":"https://fhir.nhs.uk/Id/nhs-number"}]},"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009"}},
 {"resource":{"resourceType":"Encounter","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"HH"},"length":{"value":29.50,"unit":"min"},"subject":{"reference":"urn:uuid:4f1e7a3c-0c9e-4b62-9e2b-3e0b8e5f1a2d"}},"request":{"method":"POST","url":"Encounter"}}]}`

// TestBundleTreeStoresWhatBundleStores: a transaction handed over as a tree
// stores the same resources as the same transaction posted as JSON (decimals
// as written, references rewritten), and leaves the caller's tree as it was.
func TestBundleTreeStoresWhatBundleStores(t *testing.T) {
	params, err := search.New()
	if err != nil {
		t.Fatal(err)
	}
	stored := func(tree bool) map[string]string {
		st, v := openStore(t)
		e := engine.New(engine.Config{Store: st, Validator: v, Base: "http://test/fhir", Params: params, Enforcement: engine.EnforceStrict})
		ctx := context.Background()
		var b *engine.Bundle
		if tree {
			obj, err := fhir.Parse([]byte(treeBundle), fhir.DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			before, _ := fhir.Marshal(obj)
			if b, err = e.BundleTree(ctx, obj, engine.SearchOptions{}); err != nil {
				t.Fatal(err)
			}
			if after, _ := fhir.Marshal(obj); string(after) != string(before) {
				t.Fatalf("BundleTree changed the caller's tree:\n%s\nwas\n%s", after, before)
			}
		} else if b, err = e.Bundle(ctx, []byte(treeBundle), engine.SearchOptions{}); err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		ids := regexp.MustCompile(`(Patient|Encounter)/[A-Za-z0-9.-]+`)
		for _, en := range b.Entry {
			rt, rest, _ := strings.Cut(en.Response.Location, "/")
			id, _, _ := strings.Cut(rest, "/")
			v, err := e.Read(ctx, rt, id)
			if err != nil {
				t.Fatal(err)
			}
			obj, err := fhir.Parse(v.Body, fhir.DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			delete(obj, "id")
			delete(obj, "meta")
			body, _ := fhir.Marshal(obj)
			out[rt] = ids.ReplaceAllString(string(body), "$1/ID")
		}
		return out
	}
	posted, handed := stored(false), stored(true)
	if len(posted) != 2 || !strings.Contains(posted["Encounter"], `"value":29.50`) {
		t.Fatalf("posted Bundle stored %v", posted)
	}
	for rt, want := range posted {
		if handed[rt] != want {
			t.Errorf("%s as a tree:\n%s\nposted as JSON:\n%s", rt, handed[rt], want)
		}
	}
}

// TestBundleTreeRefusesWhatParseNeverMakes: values a parsed body cannot hold
// (Go numbers, invalid UTF-8, malformed numbers, too deep) are Invalid errors
// naming where, and nothing is stored.
func TestBundleTreeRefusesWhatParseNeverMakes(t *testing.T) {
	params, err := search.New()
	if err != nil {
		t.Fatal(err)
	}
	st, v := openStore(t)
	e := engine.New(engine.Config{Store: st, Validator: v, Base: "http://test/fhir", Params: params})
	deep := map[string]any{}
	for cur, i := deep, 0; i < 70; i++ {
		next := map[string]any{}
		cur["extension"] = []any{next}
		cur = next
	}
	for _, tc := range []struct {
		name  string
		value any
		where string
	}{
		{"go int", 3, "entry[0].resource.multipleBirthInteger"},
		{"invalid UTF-8", "\xff", "entry[0].resource.multipleBirthInteger"},
		{"malformed number", json.Number("1e"), "entry[0].resource.multipleBirthInteger"},
		{"too deep", deep, "entry[0].resource.multipleBirthInteger.extension[0].extension[0]"},
		{"second of a list", []any{"fine", 3}, "entry[0].resource.multipleBirthInteger[1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pat := fhir.Object{"resourceType": "Patient", "multipleBirthInteger": tc.value}
			tree := fhir.Object{"resourceType": "Bundle", "type": "transaction", "entry": []any{
				map[string]any{"resource": pat, "request": map[string]any{"method": "POST", "url": "Patient"}}}}
			_, err := e.BundleTree(context.Background(), tree, engine.SearchOptions{})
			fe := fhir.AsError(err)
			if err == nil || fe.Kind != fhir.Invalid || len(fe.Issues) == 0 || !strings.HasPrefix(fe.Issues[0].Expression, tc.where) {
				t.Fatalf("got %v, want an Invalid error at %s", err, tc.where)
			}
		})
	}
	h, err := e.History(context.Background(), "Patient", "", nil)
	if err != nil || len(h.Entry) != 0 {
		t.Fatalf("stored after refusals: %v %v", h, err)
	}
}
