package sqlite

import (
	"context"
	"fmt"
	"testing"
	"time"

	"crs/fhir"
	fsearch "crs/fhir/search"
	"crs/fhir/store"
)

// TestIndexTotal checks the totals counted from index rows alone
// (indextotal.go) against the matches found page by page through the
// driving set, below, at and past the total limit, on the first page and
// after it: a driving run in row id order probed by a _has (people with
// active goals) and by a token, with a row id twice in the run; a driving
// string prefix that is not a run (family name and birth date), with a
// person named twice in it. Deleted and updated resources are in every set,
// so a count that read index rows of versions that are not current (or of
// deleted resources) would be wrong.
func TestIndexTotal(t *testing.T) {
	s := openTemp(t)
	reg := fsearch.Default()
	ctx := context.Background()
	moved := map[string]bool{}
	put := func(vid int, res string) {
		t.Helper()
		if err := s.Write(ctx, func(tx store.Tx) error { return putVersion(ctx, tx, reg, vid, "PUT", res) }); err != nil {
			t.Fatal(err)
		}
	}
	del := func(typ, id string, vid int) {
		t.Helper()
		if typ == "Patient" && moved[id] {
			vid++
		}
		v := store.Version{Type: typ, ID: id, VersionID: vid, LastUpdated: time.Now(), Method: "DELETE", Deleted: true}
		if err := s.Write(ctx, func(tx store.Tx) error { return tx.Put(ctx, v, nil) }); err != nil {
			t.Fatal(err)
		}
	}
	patient := func(i int, org, family string) string {
		gp := `{"reference":"Practitioner/gp1"}`
		if i%5 == 0 {
			// The same practitioner twice, once with an identifier: two
			// index rows of one row id in the practitioner's run.
			gp += `,{"reference":"Practitioner/gp1","identifier":{"system":"urn:gp","value":"G1"}}`
		}
		name := `{"family":"` + family + `"}`
		if i%4 == 0 {
			name += `,{"family":"` + family + `son"}`
		}
		return fmt.Sprintf(`{"resourceType":"Patient","id":"p%d","active":%t,"name":[%s],"birthDate":"%d-01-01","managingOrganization":{"reference":"Organization/%s"},"generalPractitioner":[%s]}`,
			i, i%3 != 0, name, 1930+i%40, org, gp)
	}
	for i := 0; i < 120; i++ {
		put(1, patient(i, []string{"o1", "o2"}[i%2], []string{"Smith", "Jones"}[i%3/2]))
		status := []string{"active", "cancelled", "completed"}[i%3]
		put(1, fmt.Sprintf(`{"resourceType":"Goal","id":"g%d","lifecycleStatus":"%s","description":{"text":"x"},"subject":{"reference":"Patient/p%d"}}`, i, status, i))
		if i%7 == 0 {
			put(1, fmt.Sprintf(`{"resourceType":"Goal","id":"h%d","lifecycleStatus":"active","description":{"text":"x"},"subject":{"reference":"Patient/p%d"}}`, i, i))
		}
	}
	// Moved, deleted, changed: their old index rows must not count.
	for i := 0; i < 120; i += 11 {
		put(2, patient(i, "o3", "Brown"))
		moved[fmt.Sprintf("p%d", i)] = true
	}
	for i := 1; i < 120; i += 13 {
		del("Patient", fmt.Sprintf("p%d", i), 2)
	}
	for i := 0; i < 120; i += 9 {
		put(2, fmt.Sprintf(`{"resourceType":"Goal","id":"g%d","lifecycleStatus":"completed","description":{"text":"x"},"subject":{"reference":"Patient/p%d"}}`, i, i))
	}
	for i := 0; i < 120; i += 14 {
		del("Goal", fmt.Sprintf("h%d", i), 2)
	}
	for _, c := range []struct {
		query string
		run   bool // the driver is one run in row id order
	}{
		{"organization=Organization/o1&_has:Goal:subject:lifecycle-status=active", true},
		{"organization=Organization/o2&_has:Goal:subject:lifecycle-status=active&active=false", true},
		{"general-practitioner=Practitioner/gp1&active=true", true},
		{"general-practitioner=Practitioner/gp1&_has:Goal:subject:lifecycle-status=active", true},
		{"family=Smi&birthdate=ge1950", false},
		{"family=Smith&_has:Goal:subject:lifecycle-status=cancelled", false},
	} {
		q := parseQuery(t, reg, "Patient", c.query)
		q.Total, q.Count = fhir.TotalNone, 500
		all := len(allPages(t, s, q, never))
		if all < 10 {
			t.Fatalf("%s: %d matches, too few to count past a page", c.query, all)
		}
		d := 0 // the driver: the first parameter, as written
		var rb builder
		if run, err := runOf(ctx, s.read, &rb, "Patient", q.Params[d], 0); err != nil || run != c.run {
			t.Fatalf("%s: run %t (%v), want %t", c.query, run, err, c.run)
		}
		for _, limit := range []int{1, 7, all - 1, all, all + 1, 1000} {
			want := min(all, limit)
			got, ok, err := indexTotal(ctx, s.read, q, d, 0, limit)
			if err != nil || !ok || got != want {
				t.Errorf("%s: indexTotal up to %d: %d, %t, %v; want %d", c.query, limit, got, ok, err, want)
			}
			// Through search: the first page of 3 in row id order counts
			// the matches after it (boundedTotalAfter), and the total is
			// absent at or past the limit.
			counted := *q
			counted.Total, counted.TotalLimit, counted.Count = fhir.TotalAccurate, limit, 3
			res, err := search(ctx, s.read, &counted, never)
			if err != nil {
				t.Fatal(err)
			}
			wantTotal := all
			if all >= limit {
				wantTotal = -1
			}
			if res.Total != wantTotal {
				t.Errorf("%s: total with a limit of %d: %d, want %d", c.query, limit, res.Total, wantTotal)
			}
		}
	}
}
