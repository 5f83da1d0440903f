package sqlite

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"crs/fhir"
	fsearch "crs/fhir/search"
	"crs/fhir/store"
)

// TestIdentifierLookupUsesIndex checks that a reference :identifier lookup
// (an importer's duplicate check of a message control id) is found through
// the partial index of identifier codes, not by walking every row of the
// parameter, and that it finds what it found before: each value's
// Provenances, with or without a system, and none for an unknown code.
func TestIdentifierLookupUsesIndex(t *testing.T) {
	s := openTemp(t)
	reg := fsearch.Default()
	const sys = "https://example.org/Id/hl7v2-message/RR8"
	putMessageProvenances(t, s, reg, sys, 300)
	for _, c := range []struct {
		query   string
		want    []string
		indexed bool
	}{
		{"entity:identifier=" + sys + "|B7", []string{"v7"}, true},
		{"entity:identifier=B9", []string{"v9"}, true},
		{"entity:identifier=" + sys + "|B7," + sys + "|B12", []string{"v12", "v7"}, true},
		{"entity:identifier=" + sys + "|B1000", nil, true},
		{"entity:identifier=https://other.example.org|B7", nil, true},
		{"entity=Patient/p6", []string{"v6"}, false},
	} {
		q := parseQuery(t, reg, "Provenance", c.query)
		q.Count = 500
		got := allPages(t, s, q, never)
		slices.Sort(got)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.query, got, c.want)
		}
		var b builder
		if err := lookup(&b, "Provenance", q.Params[0], ""); err != nil {
			t.Fatal(err)
		}
		plan := queryPlan(t, s, b.sql.String(), b.args...)
		if uses := strings.Contains(strings.Join(plan, "; "), "idx_reference_ident"); uses != c.indexed {
			t.Errorf("%s: lookup plan %q uses idx_reference_ident: %v, want %v", c.query, plan, uses, c.indexed)
		}
	}
}

// putMessageProvenances stores n Provenances as the ADT importer writes them,
// each naming its message's control id B<i> in system sys; every third also
// names a Patient by reference (an entity row without a code).
func putMessageProvenances(t testing.TB, s *Store, reg *fsearch.Registry, sys string, n int) {
	t.Helper()
	ctx := context.Background()
	if err := s.Write(ctx, func(tx store.Tx) error {
		for i := 0; i < n; i++ {
			entity := fmt.Sprintf(`{"role":"source","what":{"identifier":{"system":%q,"value":"B%d"}}}`, sys, i)
			if i%3 == 0 {
				entity += fmt.Sprintf(`,{"role":"source","what":{"reference":"Patient/p%d"}}`, i)
			}
			res := fmt.Sprintf(`{"resourceType":"Provenance","id":"v%d","target":[{"reference":"Patient/p%d"}],"recorded":"2026-11-29T10:15:00Z","agent":[{"who":{"reference":"Organization/o1"}}],"entity":[%s]}`, i, i, entity)
			obj, err := fhir.Parse([]byte(res), fhir.DefaultLimits)
			if err != nil {
				return err
			}
			index, err := reg.Extract("Provenance", obj)
			if err != nil {
				return err
			}
			v := store.Version{Type: "Provenance", ID: fhir.ID(obj), VersionID: 1, LastUpdated: time.Now(), Method: "POST", Body: []byte(res)}
			if err := tx.Put(ctx, v, index); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkMessageDuplicateCheck is an importer's duplicate check of a new
// message control id (Provenance?entity:identifier=system|value, found in
// none) with 1,000 and 20,000 messages' Provenances stored: the lookup's
// cost should not grow with them. cpu-us/op is the process's CPU per search.
func BenchmarkMessageDuplicateCheck(b *testing.B) {
	const sys = "https://example.org/Id/hl7v2-message/RR8"
	for _, stored := range []int{1000, 20000} {
		b.Run(fmt.Sprint(stored), func(b *testing.B) {
			s := openTemp(b)
			reg := fsearch.Default()
			putMessageProvenances(b, s, reg, sys, stored)
			// Two conditions, as the access policy adds one to the feed's
			// search: the identifier is sampled before it drives.
			q := parseQuery(b, reg, "Provenance", "entity:identifier="+sys+"|NEW&agent=Organization/o1")
			ctx := context.Background()
			b.ResetTimer()
			cpu := cpuTime()
			for i := 0; i < b.N; i++ {
				res, err := s.Search(ctx, q)
				if err != nil {
					b.Fatal(err)
				}
				if len(res.Matches) != 0 {
					b.Fatalf("%d matches, want none", len(res.Matches))
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu)/float64(time.Microsecond)/float64(b.N), "cpu-us/op")
		})
	}
}
