package mapping

import (
	"context"
	"strconv"
	"testing"

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
