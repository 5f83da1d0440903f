package engine

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"crs/fhir"
	"crs/fhir/search"
	"crs/fhir/store"
)

// chainTx answers searches of Patient?_id=… with the ids it holds, and
// records each query.
type chainTx struct {
	store.Tx
	holds   map[string]bool
	queries []*fhir.Query
}

func (c *chainTx) Search(_ context.Context, q *fhir.Query) (*store.SearchResult, error) {
	c.queries = append(c.queries, q)
	res := &store.SearchResult{}
	for _, v := range q.Params[0].Values {
		if c.holds[v.Code] {
			res.Matches = append(res.Matches, store.Version{Type: q.Type, ID: v.Code})
		}
	}
	return res, nil
}

// TestInBoundsByTargets: creates whose conditions are chains along their
// references are cleared by one search of the distinct targets (with the
// chain's own conditions); a create pointing elsewhere, one not prestamped,
// and any condition that is not such a chain are left to the search.
func TestInBoundsByTargets(t *testing.T) {
	reg, err := search.New()
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{params: reg}
	subject := &fhir.SearchParam{Code: "subject", Type: fhir.TypeReference}
	la := fhir.Param{Def: &fhir.SearchParam{Code: "responsible-la", Type: fhir.TypeToken}, Values: []fhir.Value{{System: "http://ons", Code: "E1", HasSystem: true}}}
	chain := fhir.Param{Def: subject, Modifier: "Patient", Chain: []*fhir.Query{{Type: "Patient", Params: []fhir.Param{la}}}}
	create := func(refs ...string) *bundleEntry {
		be := &bundleEntry{rt: "Encounter", pre: &prestamped{}}
		for _, r := range refs {
			typ, id, _ := strings.Cut(r, "/")
			be.pre.index = append(be.pre.index, fhir.IndexValue{Param: "subject", Type: fhir.TypeReference, RefType: typ, RefID: id})
		}
		return be
	}
	t.Run("chain", func(t *testing.T) {
		var list []*bundleEntry
		for i := 0; i < 250; i++ {
			list = append(list, create("Patient/a"))
		}
		other, group, none, unstamped := create("Patient/b"), create("Group/a"), create(), &bundleEntry{rt: "Encounter"}
		list = append(list, other, group, none, unstamped)
		tx := &chainTx{holds: map[string]bool{"a": true}}
		rest, err := e.inBoundsByTargets(context.Background(), tx, []fhir.Param{chain}, list)
		if err != nil {
			t.Fatal(err)
		}
		if len(tx.queries) != 1 || tx.queries[0].Type != "Patient" || len(tx.queries[0].Params) != 2 ||
			tx.queries[0].Params[0].Def.Code != "_id" || fmt.Sprint(tx.queries[0].Params[0].Values) != fmt.Sprint([]fhir.Value{{Raw: "a", Code: "a"}, {Raw: "b", Code: "b"}}) ||
			tx.queries[0].Params[1].Def.Code != "responsible-la" {
			t.Fatalf("queries %+v, want one Patient?_id=a,b&responsible-la=…", tx.queries)
		}
		for i, be := range list[:250] {
			if !be.inCreateBounds {
				t.Fatalf("create %d to Patient/a not cleared", i)
			}
		}
		if len(rest) != 4 || rest[0] != other || rest[1] != group || rest[2] != none || rest[3] != unstamped {
			t.Fatalf("left to the search: %v", rest)
		}
		for _, be := range rest {
			if be.inCreateBounds {
				t.Fatal("a create left to the search was cleared")
			}
		}
	})
	no := false
	for name, conds := range map[string][]fhir.Param{
		"a token condition beside the chain": {chain, la},
		"a chain with a value":               {{Def: subject, Values: []fhir.Value{{RefType: "Patient", RefID: "a"}}, Chain: chain.Chain}},
		"a chain to two types":               {{Def: subject, Chain: []*fhir.Query{chain.Chain[0], {Type: "Group"}}}},
		"another type's modifier":            {{Def: subject, Modifier: "Group", Chain: chain.Chain}},
		"a reverse chain":                    {{Has: &fhir.Has{Type: "ServiceRequest"}}},
		":missing":                           {{Def: subject, Missing: &no, Chain: chain.Chain}},
		"no condition":                       nil,
	} {
		t.Run(name, func(t *testing.T) {
			list := []*bundleEntry{create("Patient/a")}
			tx := &chainTx{holds: map[string]bool{"a": true}}
			rest, err := e.inBoundsByTargets(context.Background(), tx, conds, list)
			if err != nil || len(rest) != 1 || list[0].inCreateBounds || len(tx.queries) != 0 {
				t.Fatalf("%v %d left, cleared %v, %d queries; want it left to the search", err, len(rest), list[0].inCreateBounds, len(tx.queries))
			}
		})
	}
}
