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

// TestSampleOrder checks that the second sample counts a plain parameter
// before a _has written first, so that the _has is counted only to one row
// past the plain parameter's set, and that the plain parameter drives.
func TestSampleOrder(t *testing.T) {
	s := openTemp(t)
	reg := fsearch.Default()
	ctx := context.Background()
	if err := s.Write(ctx, func(tx store.Tx) error {
		put := func(res string) error {
			obj, err := fhir.Parse([]byte(res), fhir.DefaultLimits)
			if err != nil {
				return err
			}
			index, err := reg.Extract(fhir.ResourceType(obj), obj)
			if err != nil {
				return err
			}
			return tx.Put(ctx, store.Version{Type: fhir.ResourceType(obj), ID: fhir.ID(obj), VersionID: 1, LastUpdated: time.Now(), Method: "POST", Body: []byte(res)}, index)
		}
		// 1,200 people of o1, 2,400 of o2; an active goal each: both sets
		// saturate the first sample.
		for i := 0; i < 3600; i++ {
			org := "o2"
			if i%3 == 0 {
				org = "o1"
			}
			if err := put(fmt.Sprintf(`{"resourceType":"Patient","id":"p%d","managingOrganization":{"reference":"Organization/%s"}}`, i, org)); err != nil {
				return err
			}
			if err := put(fmt.Sprintf(`{"resourceType":"Goal","id":"g%d","lifecycleStatus":"active","description":{"text":"x"},"subject":{"reference":"Patient/p%d"}}`, i, i)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	q := parseQuery(t, reg, "Patient", "_has:Goal:subject:lifecycle-status=active&organization=Organization/o1")
	pl := &planner{ctx: ctx, db: s.read}
	d, n, err := pl.driverCount(q.Type, q.Params, false)
	if err != nil {
		t.Fatal(err)
	}
	if d != 1 || n != 1200 {
		t.Errorf("driver %d of %d rows, want 1 (organization) of 1200", d, n)
	}
	for k := range pl.memo {
		if k.p == &q.Params[0] && k.limit > n+1 {
			t.Errorf("the _has was counted up to %d, past the plain parameter's %d rows", k.limit, n)
		}
	}
}
