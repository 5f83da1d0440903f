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

// TestHiFloorCount checks that a date parameter bounded from below counts
// the same rows through the latest ends' index as through the lookup alone,
// and that a range stored backwards (its end before its start, which the
// floor would miss) is still counted when it is the only match.
func TestHiFloorCount(t *testing.T) {
	s := openTemp(t)
	reg := fsearch.Default()
	ctx := context.Background()
	day := func(y, m, d int) time.Time { return time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC) }
	if err := s.Write(ctx, func(tx store.Tx) error {
		for i := 0; i < 120; i++ {
			res := fmt.Sprintf(`{"resourceType":"Patient","id":"p%d","birthDate":"%d-%02d-01"}`, i, 1930+i%60, 1+i%12)
			if err := putFirst(ctx, tx, reg, res); err != nil {
				return err
			}
		}
		// An encounter whose stored period ends before it starts.
		return tx.Put(ctx, store.Version{Type: "Encounter", ID: "backwards", VersionID: 1, LastUpdated: time.Now(), Method: "POST", Body: []byte(`{"resourceType":"Encounter","id":"backwards"}`)},
			[]fhir.IndexValue{{Param: "date", Type: fhir.TypeDate, Low: day(2020, 1, 1), High: day(2010, 1, 1)}})
	}); err != nil {
		t.Fatal(err)
	}
	pl := &planner{ctx: ctx, db: s.read}
	for _, c := range []struct{ typ, query string }{
		{"Patient", "birthdate=ge1950"}, {"Patient", "birthdate=gt1950-06"}, {"Patient", "birthdate=sa1970"},
		{"Patient", "birthdate=ge1950,gt1980"}, {"Patient", "birthdate=ge2050"}, {"Encounter", "date=ge2015"},
	} {
		p := parseQuery(t, reg, c.typ, c.query).Params[0]
		if _, ok := hiFloor(p); !ok {
			t.Fatalf("%s: no floor", c.query)
		}
		for _, limit := range []int{5, 1000} {
			got, err := pl.count(c.typ, p, limit)
			if err != nil {
				t.Fatal(err)
			}
			want, err := pl.countFloor(c.typ, p, limit, 0, false)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("%s?%s up to %d: %d counted with the floor, %d without", c.typ, c.query, limit, got, want)
			}
		}
	}
}
