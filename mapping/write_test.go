package mapping

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"crs/fhir"
	"crs/fhir/engine"
)

// recordingDoor answers every transaction with 201s and records its size.
type recordingDoor struct{ sizes []int }

func (d *recordingDoor) Search(context.Context, string, string) ([]Current, error) { return nil, nil }

func (d *recordingDoor) Transaction(_ context.Context, entries []Entry) ([]EntryResult, error) {
	d.sizes = append(d.sizes, len(entries))
	out := make([]EntryResult, len(entries))
	for i := range out {
		out[i] = EntryResult{Status: "201 Created", Location: "Encounter/x" + strconv.Itoa(i) + "/_history/1"}
	}
	return out, nil
}

// TestCommitSplitsAtTheBundleLimit: a batch whose writes exceed the engine's
// Bundle limit goes in several transactions, none over the limit, no Group
// split between two, and every write counted once.
func TestCommitSplitsAtTheBundleLimit(t *testing.T) {
	var groups []Group
	for i := 0; i < 700; i++ { // 2,100 entries
		g := Group{Lines: []int{i + 2}}
		for k := 0; k < 3; k++ {
			g.Entries = append(g.Entries, Entry{Method: "POST", URL: "Encounter"})
			g.Kinds = append(g.Kinds, "resource")
			g.States = append(g.States, nil)
		}
		groups = append(groups, g)
	}
	door := &recordingDoor{}
	rep := NewReport(nil)
	if err := Commit(context.Background(), door, groups, false, rep); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, n := range door.sizes {
		if n > engine.MaxBundleEntries || n%3 != 0 {
			t.Errorf("a transaction of %d entries (limit %d, groups of 3)", n, engine.MaxBundleEntries)
		}
		total += n
	}
	if total != 2100 || len(door.sizes) != 3 || rep.Created != 2100 {
		t.Errorf("transactions %v (%d entries), %d created; want 3 transactions, 2,100 entries", door.sizes, total, rep.Created)
	}
}

// TestOrListEscapes: a token value's separators are escaped in each part of
// the OR-list, and the list is query-escaped, for every value alike.
func TestOrListEscapes(t *testing.T) {
	got := OrList("http://s", []string{`a,b`, `c|d$e\f`, `plain`})
	want := `http%3A%2F%2Fs%7Ca%5C%2Cb,http%3A%2F%2Fs%7Cc%5C%7Cd%5C%24e%5C%5Cf,http%3A%2F%2Fs%7Cplain`
	if got != want {
		t.Fatalf("OrList: %s, want %s", got, want)
	}
}

// entriesDoor records every transaction's entries; a transaction holding
// fail's fullUrl fails, as a rejected person's write does.
type entriesDoor struct {
	txs  [][]Entry
	fail string
}

func (d *entriesDoor) Search(context.Context, string, string) ([]Current, error) { return nil, nil }

func (d *entriesDoor) Transaction(_ context.Context, entries []Entry) ([]EntryResult, error) {
	out := make([]EntryResult, len(entries))
	for i, e := range entries {
		if d.fail != "" && e.FullURL == d.fail {
			return nil, errors.New("refused")
		}
		out[i] = EntryResult{Status: "201 Created", Location: "X/" + strconv.Itoa(i) + "/_history/1"}
	}
	d.txs = append(d.txs, entries)
	return out, nil
}

// TestOneProvenancePerTransaction: a transaction of several groups carries
// one Provenance for its creates and one for its updates, naming every
// resource written, and each resource's rows are its meta.source; when the
// transaction fails and each group is written on its own, each carries its
// own Provenance, naming only its resources.
func TestOneProvenancePerTransaction(t *testing.T) {
	run := &Run{ID: "run-1", Source: "visits", File: "my visits.csv", Org: Current{ID: "org-1"}, ODS: "VN1A2",
		Time: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), Base: "https://example.org/fhir"}
	groups := func() []Group {
		var out []Group
		for i, fullURL := range []string{"urn:uuid:a", "urn:uuid:b"} {
			created := &State{Type: "Encounter", Obj: fhir.Object{"resourceType": "Encounter"}, FullURL: fullURL}
			updated := &State{Type: "Patient", ID: "p" + strconv.Itoa(i), Version: 1, Old: []byte(`{}`),
				Obj: fhir.Object{"resourceType": "Patient", "gender": "female", "meta": map[string]any{"tag": []any{"kept"}}}}
			rows := []SourceRow{{Line: 2 + 2*i}, {Line: 3 + 2*i}, {Line: 2 + 2*i}}
			out = append(out, run.Writes([]*State{created, updated}, map[*State][]SourceRow{created: rows[:1], updated: rows}))
		}
		return out
	}
	door := &entriesDoor{}
	gs := groups()
	if err := Commit(context.Background(), door, gs, false, NewReport(nil)); err != nil {
		t.Fatal(err)
	}
	if len(door.txs) != 1 || len(door.txs[0]) != 6 {
		t.Fatalf("transactions %v, want one of 4 resources and 2 Provenances", door.txs)
	}
	prov := door.txs[0][4:]
	if got := fhir.ResourceType(prov[0].Resource) + fhir.ResourceType(prov[1].Resource); got != "ProvenanceProvenance" {
		t.Fatalf("the last entries are %s", got)
	}
	create, update := prov[0].Resource, prov[1].Resource
	if s := jsonOf(create["target"]); s != `[{"reference":"urn:uuid:a"},{"reference":"urn:uuid:b"}]` || !strings.Contains(jsonOf(create["activity"]), `"CREATE"`) {
		t.Errorf("creates' Provenance: %s", jsonOf(create))
	}
	if s := jsonOf(update["target"]); s != `[{"reference":"Patient/p0"},{"reference":"Patient/p1"}]` || !strings.Contains(jsonOf(update["activity"]), `"UPDATE"`) {
		t.Errorf("updates' Provenance: %s", jsonOf(update))
	}
	if s := jsonOf(update["entity"]); !strings.Contains(s, `"value":"my visits.csv"`) || !strings.Contains(s, "lines 2-5") {
		t.Errorf("the Provenance's source entity: %s", s)
	}
	meta := gs[1].Entries[1].Resource["meta"].(map[string]any)
	if meta["source"] != "https://example.org/fhir/Id/import-source/visits/my%20visits.csv#line=4,5" || jsonOf(meta["tag"]) != `["kept"]` {
		t.Errorf("the updated Patient's meta: %v", meta)
	}
	if src := gs[0].Entries[0].Resource["meta"].(map[string]any)["source"]; src != "https://example.org/fhir/Id/import-source/visits/my%20visits.csv#line=2" {
		t.Errorf("the created Encounter's meta.source: %v", src)
	}

	door = &entriesDoor{fail: "urn:uuid:b"}
	rep := NewReport(nil)
	if err := Commit(context.Background(), door, groups(), false, rep); err != nil {
		t.Fatal(err)
	}
	if len(door.txs) != 1 || len(door.txs[0]) != 4 || rep.Rejected != 2 {
		t.Fatalf("after a failure: transactions %v, %d rows rejected; want the first group alone with its 2 Provenances, the second's 2 lines rejected", door.txs, rep.Rejected)
	}
	if s := jsonOf(door.txs[0][2].Resource["target"]) + jsonOf(door.txs[0][3].Resource["target"]); s != `[{"reference":"urn:uuid:a"}][{"reference":"Patient/p0"}]` {
		t.Errorf("the first group's own Provenances name %s", s)
	}
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestEscapeValue: each of the search separators is escaped with a
// backslash, a backslash first, and anything else is left as it is.
func TestEscapeValue(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`plain`, `plain`},
		{`a,b`, `a\,b`},
		{`c|d$e\f`, `c\|d\$e\\f`},
		{`\,`, `\\\,`},
		{`https://x.example/Id/hospital-number/RR8`, `https://x.example/Id/hospital-number/RR8`},
	} {
		if got := EscapeValue(c.in); got != c.want {
			t.Errorf("EscapeValue(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
