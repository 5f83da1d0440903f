package engine_test

import (
	"context"
	"strings"
	"testing"

	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/search"
)

// resultOnly are queries made only of result parameters: no criteria, so a
// conditional interaction with one would match every resource.
var resultOnly = []string{
	"_count=1", "_sort=_id", "_elements=id", "_summary=true", "_total=accurate",
	"_include=Patient:organization", "_revinclude=Goal:subject", "_count=1&_sort=-_lastUpdated&_total=none",
	"_format=json", "_pretty=true",
}

// versions counts every version stored.
func versions(t *testing.T, eng *engine.Engine) int {
	t.Helper()
	h, err := eng.History(context.Background(), "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return *h.Total
}

// TestConditionalNeedsCriteria checks that every conditional interaction —
// create (If-None-Exist), update, delete, and their transaction twins
// (ifNoneExist, conditional request.url, conditional references) — refuses a
// query without search criteria with a 400 naming the problem, and stores
// nothing.
func TestConditionalNeedsCriteria(t *testing.T) {
	st, v := openStore(t)
	ctx := context.Background()
	eng := engine.New(engine.Config{Store: st, Validator: v, Elements: v, Base: "http://test/fhir"})
	for i := 0; i < 2; i++ {
		if _, err := eng.Create(ctx, "Patient", []byte(`{"resourceType":"Patient","gender":"male"}`), ""); err != nil {
			t.Fatal(err)
		}
	}
	patient := []byte(`{"resourceType":"Patient","gender":"female"}`)
	bundle := func(entry string) []byte {
		return []byte(`{"resourceType":"Bundle","type":"transaction","entry":[` + entry + `]}`)
	}
	for _, q := range resultOnly {
		qj := strings.ReplaceAll(q, `"`, `\"`)
		for _, c := range []struct {
			name string
			do   func() error
		}{
			{"create If-None-Exist", func() error { _, err := eng.Create(ctx, "Patient", patient, q); return err }},
			{"conditional update", func() error { _, err := eng.ConditionalUpdate(ctx, "Patient", q, patient, 0); return err }},
			{"conditional delete", func() error { _, err := eng.ConditionalDelete(ctx, "Patient", q, 0); return err }},
			{"transaction ifNoneExist", func() error {
				_, err := eng.Bundle(ctx, bundle(`{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient","ifNoneExist":"`+qj+`"}}`), engine.SearchOptions{})
				return err
			}},
			{"transaction conditional update", func() error {
				_, err := eng.Bundle(ctx, bundle(`{"resource":{"resourceType":"Patient"},"request":{"method":"PUT","url":"Patient?`+qj+`"}}`), engine.SearchOptions{})
				return err
			}},
			{"transaction conditional delete", func() error {
				_, err := eng.Bundle(ctx, bundle(`{"request":{"method":"DELETE","url":"Patient?`+qj+`"}}`), engine.SearchOptions{})
				return err
			}},
			{"transaction conditional reference", func() error {
				_, err := eng.Bundle(ctx, bundle(`{"resource":{"resourceType":"Goal","lifecycleStatus":"active","description":{"text":"walk"},"subject":{"reference":"Patient?`+qj+`"}},"request":{"method":"POST","url":"Goal"}}`), engine.SearchOptions{})
				return err
			}},
		} {
			before := versions(t, eng)
			err := c.do()
			if fhir.KindOf(err) != fhir.Invalid || !strings.Contains(err.Error(), "search criterion") {
				t.Errorf("%s with %q: got %v, want a 400 saying it needs a search criterion", c.name, q, err)
			}
			if after := versions(t, eng); after != before {
				t.Errorf("%s with %q stored %d versions", c.name, q, after-before)
			}
		}
	}
	// With a criterion beside the result parameters, the condition works.
	if _, err := eng.ConditionalDelete(ctx, "Patient", "gender=female&_count=1", 0); err != nil {
		t.Errorf("conditional delete with a criterion: %v", err)
	}
}

// TestQueryLimitsReachTheParser checks that the engine's configured query
// limits bound searches, conditions and bundle searches alike.
func TestQueryLimitsReachTheParser(t *testing.T) {
	st, v := openStore(t)
	ctx := context.Background()
	eng := engine.New(engine.Config{Store: st, Validator: v, Elements: v, Base: "http://test/fhir", QueryLimits: search.Limits{MaxOr: 3}})
	raw, _ := engine.ParseQueryString("_id=a,b,c,d")
	if _, err := eng.Search(ctx, "Patient", raw, engine.SearchOptions{}); fhir.KindOf(err) != fhir.Invalid || !strings.Contains(err.Error(), "the limit is 3") {
		t.Errorf("search: %v", err)
	}
	if _, err := eng.ConditionalDelete(ctx, "Patient", "_id=a,b,c,d", 0); fhir.KindOf(err) != fhir.Invalid {
		t.Errorf("conditional delete: %v", err)
	}
	b, err := eng.Bundle(ctx, []byte(`{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient?_id=a,b,c,d"}}]}`), engine.SearchOptions{})
	if err != nil || len(b.Entry) != 1 || b.Entry[0].Response == nil || !strings.HasPrefix(b.Entry[0].Response.Status, "400") {
		t.Errorf("batch search: %v %+v", err, b)
	}
	if _, err := eng.Search(ctx, "Patient", raw[:0], engine.SearchOptions{}); err != nil {
		t.Errorf("search within limits: %v", err)
	}
}

// FuzzSearch runs arbitrary query strings through the engine's search on a
// small SQLite store: every one must be answered with a page or a client
// error, never a panic or an internal error (a 5xx).
func FuzzSearch(f *testing.F) {
	for _, seed := range [][2]string{
		{"Patient", "name=smith&gender=male&_count=2"},
		{"Patient", "_id=" + strings.Repeat("a,", 999) + "b"},
		{"Patient", "name=" + strings.Repeat("x,", 499) + "y"},
		{"Patient", strings.Repeat("birthdate=gt2000&", 20)},
		{"Patient", "_include=Patient:organization&_revinclude=Goal:subject&_sort=-birthdate,family"},
		{"Patient", "organization.partof.name=x&general-practitioner:Practitioner.name=y"},
		{"Patient", "_has:Goal:subject:lifecycle-status=active&_total=accurate&_summary=count"},
		{"Goal", "subject.name:contains=a&target-date=ge2026-01-01&_elements=id,subject"},
		{"CarePlan", "date=ap2026-11&status:not=active&subject:missing=true"},
		{"Observation", "value-quantity=gt5.4|http://unitsofmeasure.org|mg&code=a|b,c"},
		{"Patient", "_cursor=bogus&_count=-1"},
		{"Patient", "name=%zz&birthdate=2026-02-30"},
		{"Patient", "_sort=" + strings.Repeat("family,", 10)},
		{"Nonsense", "x=y"},
	} {
		f.Add(seed[0], seed[1])
	}
	st, v := openStore(f)
	ctx := context.Background()
	eng := engine.New(engine.Config{Store: st, Validator: v, Elements: v, Base: "http://fuzz/fhir"})
	for _, body := range []string{
		`{"resourceType":"Organization","id":"o1","name":"Org"}`,
		`{"resourceType":"Patient","id":"p1","name":[{"family":"Smith","given":["Ann"]}],"gender":"female","birthDate":"2001-02-03","managingOrganization":{"reference":"Organization/o1"}}`,
		`{"resourceType":"Goal","id":"g1","lifecycleStatus":"active","description":{"text":"walk"},"subject":{"reference":"Patient/p1"}}`,
	} {
		obj, err := fhir.Parse([]byte(body), fhir.DefaultLimits)
		if err != nil {
			f.Fatal(err)
		}
		if _, err := eng.Update(ctx, fhir.ResourceType(obj), fhir.ID(obj), []byte(body), 0); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, rt, query string) {
		params, err := engine.ParseQueryString(query)
		if err == nil {
			_, err = eng.Search(ctx, rt, params, engine.SearchOptions{})
		}
		if err != nil && fhir.KindOf(err) == fhir.Internal {
			t.Fatalf("%s?%s: internal error: %v", rt, query, err)
		}
	})
}

// TestConditionalDeleteMatches checks how many resources one conditional
// delete deletes: one by default (several matches: 412, nothing deleted),
// up to MaxConditionalDelete when configured, by REST and in a transaction.
func TestConditionalDeleteMatches(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		max, matches int
		wantErr      fhir.Kind // 0: deleted
	}{
		{0, 1, 0},
		{0, 2, fhir.TooManyMatches},
		{3, 2, 0},
		{3, 3, 0},
		{3, 4, fhir.TooManyMatches},
	} {
		for _, viaBundle := range []bool{false, true} {
			st, v := openStore(t)
			eng := engine.New(engine.Config{Store: st, Validator: v, Elements: v, Base: "http://test/fhir", MaxConditionalDelete: c.max})
			for i := 0; i < c.matches; i++ {
				if _, err := eng.Create(ctx, "Patient", []byte(`{"resourceType":"Patient","gender":"other"}`), ""); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := eng.Create(ctx, "Patient", []byte(`{"resourceType":"Patient","gender":"male"}`), ""); err != nil {
				t.Fatal(err)
			}
			var err error
			if viaBundle {
				_, err = eng.Bundle(ctx, []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient?gender=other"}}]}`), engine.SearchOptions{})
			} else {
				_, err = eng.ConditionalDelete(ctx, "Patient", "gender=other", 0)
			}
			raw, _ := engine.ParseQueryString("_total=accurate")
			b, serr := eng.Search(ctx, "Patient", raw, engine.SearchOptions{})
			if serr != nil {
				t.Fatal(serr)
			}
			left := *b.Total
			switch {
			case c.wantErr == 0 && (err != nil || left != 1):
				t.Errorf("max %d, %d matches (bundle %v): %v, %d left, want all matches deleted", c.max, c.matches, viaBundle, err, left)
			case c.wantErr != 0 && (fhir.KindOf(err) != c.wantErr || left != c.matches+1):
				t.Errorf("max %d, %d matches (bundle %v): %v, %d left, want %v and nothing deleted", c.max, c.matches, viaBundle, err, left, c.wantErr)
			}
		}
	}
	st, v := openStore(t)
	eng := engine.New(engine.Config{Store: st, Validator: v, Base: "http://test/fhir", MaxConditionalDelete: 3})
	for i := 0; i < 2; i++ {
		if _, err := eng.Create(ctx, "Patient", []byte(`{"resourceType":"Patient","gender":"other"}`), ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := eng.ConditionalDelete(ctx, "Patient", "gender=other", 1); fhir.KindOf(err) != fhir.PreconditionFailed {
		t.Errorf("If-Match with two matches: %v", err)
	}
	cs, _ := fhir.Marshal(eng.CapabilityStatement(engine.Software{Name: "crs", Version: "test"}))
	if !strings.Contains(string(cs), `"conditionalDelete":"multiple"`) {
		t.Errorf("the CapabilityStatement does not say conditionalDelete multiple")
	}
}

// TestConditionalDeleteAudit checks that the audit record of a conditional
// delete names every resource it deleted, by REST and in a transaction.
func TestConditionalDeleteAudit(t *testing.T) {
	ctx := context.Background()
	for _, viaBundle := range []bool{false, true} {
		st, v := openStore(t)
		eng := engine.New(engine.Config{Store: st, Validator: v, Base: "http://test/fhir", MaxConditionalDelete: 3, Audit: true})
		var ids []string
		for i := 0; i < 2; i++ {
			res, err := eng.Create(ctx, "Patient", []byte(`{"resourceType":"Patient","gender":"other"}`), "")
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, res.Version.ID)
		}
		var err error
		if viaBundle {
			_, err = eng.Bundle(ctx, []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient?gender=other"}}]}`), engine.SearchOptions{})
		} else {
			_, err = eng.ConditionalDelete(ctx, "Patient", "gender=other", 0)
		}
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := engine.ParseQueryString("_count=100")
		b, err := eng.Search(ctx, "AuditEvent", raw, engine.SearchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var last string
		for _, e := range b.Entry {
			data, _ := fhir.Marshal(e)
			if s := string(data); strings.Contains(s, `"action":"D"`) || strings.Contains(s, `"action":"E"`) {
				last = s
			}
		}
		for _, id := range ids {
			if !strings.Contains(last, "Patient/"+id) {
				t.Errorf("bundle %v: the audit record does not name Patient/%s: %.600s", viaBundle, id, last)
			}
		}
	}
}
