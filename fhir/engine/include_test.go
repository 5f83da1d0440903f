package engine_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"

	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/search"
	"crs/fhir/store"
)

// countingStore counts the reads and searches the engine asks of a store.
type countingStore struct {
	store.Store
	reads, searches atomic.Int64
}

func (c *countingStore) Read(ctx context.Context, typ, id string) (store.Version, error) {
	c.reads.Add(1)
	return c.Store.Read(ctx, typ, id)
}

func (c *countingStore) Search(ctx context.Context, q *fhir.Query) (*store.SearchResult, error) {
	c.searches.Add(1)
	return c.Store.Search(ctx, q)
}

// goalPolicy lets a caller read only active goals and no Patient; everything
// else is open.
type goalPolicy struct{ active []fhir.Param }

func (p goalPolicy) Conditions(_ context.Context, rt string, perm fhir.Permission) ([]fhir.Param, error) {
	switch {
	case rt == "Goal":
		return p.active, nil
	case rt == "Patient" && perm == fhir.PermRead:
		return nil, fhir.Errorf(fhir.Forbidden, "", "no people")
	}
	return nil, nil
}

// TestIncludeBatched checks that a page's _include reads its targets in one
// search per target type, never one read per reference, and that the bundle is
// what reading each reference gives: duplicates (within a resource, across
// resources, and of a match) once, missing and deleted targets left out, a
// versioned reference as the target's current version, and with a policy the
// targets the caller may not read left out.
func TestIncludeBatched(t *testing.T) {
	sqlStore, v := openStore(t)
	st := &countingStore{Store: sqlStore}
	ctx := context.Background()
	seed := engine.New(engine.Config{Store: st, Validator: v, Elements: v, Base: "http://test/fhir"})
	put := func(res string) {
		t.Helper()
		obj, err := fhir.Parse([]byte(res), fhir.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := seed.Update(ctx, fhir.ResourceType(obj), fhir.ID(obj), []byte(res), 0); err != nil {
			t.Fatalf("seed %s: %v", res, err)
		}
	}
	goal := func(id, status, text string) string {
		return `{"resourceType":"Goal","id":"` + id + `","lifecycleStatus":"` + status + `","description":{"text":"` + text + `"},"subject":{"reference":"Patient/p1"}}`
	}
	carePlan := func(id string, goals ...string) string {
		refs := make([]string, len(goals))
		for i, g := range goals {
			refs[i] = `{"reference":"` + g + `"}`
		}
		return `{"resourceType":"CarePlan","id":"` + id + `","status":"active","intent":"plan","subject":{"reference":"Patient/p1"},"goal":[` + strings.Join(refs, ",") + `]}`
	}
	put(`{"resourceType":"Patient","id":"p1","name":[{"family":"Smith"}]}`)
	put(goal("g1", "active", "tea"))
	put(goal("g2", "active", "stairs"))
	put(goal("g3", "cancelled", "garden"))
	put(goal("g4", "active", "shops"))
	put(goal("g5", "active", "walk"))
	put(goal("g5", "active", "walk further")) // version 2: a versioned reference to 1 includes the current one
	put(carePlan("cp1", "Goal/g1", "Goal/g2", "Goal/g1"))
	put(carePlan("cp2", "Goal/g2", "Goal/missing", "Goal/g5/_history/1"))
	if _, err := seed.Delete(ctx, "Goal", "g4", 0); err != nil {
		t.Fatal(err)
	}
	put(carePlan("cp3", "Goal/g3", "Goal/g4"))
	activeGoals, err := search.Default().ParseQuery("Goal", []fhir.RawParam{{Name: "lifecycle-status", Value: "active"}}, search.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		access engine.Access
		query  string
		want   string
	}{
		{"open", nil, "_include=CarePlan:goal&_include=CarePlan:subject&_sort=_id",
			"CarePlan/cp1/1:match CarePlan/cp2/1:match CarePlan/cp3/1:match Goal/g1/1:include Goal/g2/1:include Goal/g5/2:include Goal/g3/1:include Patient/p1/1:include"},
		{"policy", goalPolicy{activeGoals.Params}, "_include=CarePlan:goal&_include=CarePlan:subject&_sort=_id",
			"CarePlan/cp1/1:match CarePlan/cp2/1:match CarePlan/cp3/1:match Goal/g1/1:include Goal/g2/1:include Goal/g5/2:include"},
		{"typed, one page of two", nil, "_include=CarePlan:goal:Goal&_sort=-_id&_count=2",
			"CarePlan/cp3/1:match CarePlan/cp2/1:match Goal/g3/1:include Goal/g2/1:include Goal/g5/2:include"},
		{"a match included", nil, "_id=g1,g2&_include=Goal:subject&_revinclude=CarePlan:goal&_include:iterate=CarePlan:goal",
			"Goal/g1/1:match Goal/g2/1:match Patient/p1/1:include CarePlan/cp1/1:include CarePlan/cp2/1:include Goal/g5/2:include"},
	} {
		t.Run(c.name, func(t *testing.T) {
			eng := engine.New(engine.Config{Store: st, Validator: v, Elements: v, Base: "http://test/fhir", Access: c.access})
			rt := "CarePlan"
			if strings.HasPrefix(c.query, "_id=g") {
				rt = "Goal"
			}
			params, err := engine.ParseQueryString(c.query)
			if err != nil {
				t.Fatal(err)
			}
			reads0, searches0 := st.reads.Load(), st.searches.Load()
			b, err := eng.Search(ctx, rt, params, engine.SearchOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range b.Entry {
				var r struct {
					ResourceType, ID string
					Meta             struct{ VersionID string }
				}
				if err := json.Unmarshal(e.Resource, &r); err != nil {
					t.Fatal(err)
				}
				got = append(got, r.ResourceType+"/"+r.ID+"/"+r.Meta.VersionID+":"+e.Search.Mode)
			}
			if g := strings.Join(got, " "); g != c.want {
				t.Errorf("entries\n got %s\nwant %s", g, c.want)
			}
			// The page, then at most one search per target type and round.
			if n := st.reads.Load() - reads0; n != 0 {
				t.Errorf("%d reads for the includes, want none (one search per target type)", n)
			}
			if n := st.searches.Load() - searches0; n > 5 {
				t.Errorf("%d searches, want the page and one per target type and round", n)
			}
			t.Logf("%d searches", st.searches.Load()-searches0)
		})
	}
}
