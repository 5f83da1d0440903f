package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"crs/fhir"
	fhirsearch "crs/fhir/search"
	"crs/fhir/store"
)

// BenchmarkLargeQuery: the largest queries the default limits admit (1,000 OR
// values, 50 ANDed parameters) and one past them (1,000 ANDed parameters), on
// a store of 1,000 patients that every parameter matches: the time SQLite
// takes to plan and run them (each query counted and paged, _total=accurate).
func BenchmarkLargeQuery(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "crs.db"), Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	reg := fhirsearch.Default()
	err = s.Write(ctx, func(tx store.Tx) error {
		for i := 0; i < 1000; i++ {
			obj, err := fhir.Parse([]byte(fmt.Sprintf(`{"resourceType":"Patient","id":"p%d","name":[{"family":"fam%d"}],"birthDate":"19%02d-01-01","identifier":[{"system":"urn:sys","value":"v%d"}]}`, i, i, i%100, i)), fhir.DefaultLimits)
			if err != nil {
				return err
			}
			index, err := reg.Extract("Patient", obj)
			if err != nil {
				return err
			}
			body, _ := fhir.Marshal(obj)
			if err := tx.Put(ctx, store.Version{Type: "Patient", ID: fhir.ID(obj), VersionID: 1, LastUpdated: time.Now(), Method: "POST", Body: body}, index); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	list := func(format string, n int) string {
		items := make([]string, n)
		for i := range items {
			items[i] = fmt.Sprintf(format, i)
		}
		return strings.Join(items, ",")
	}
	repeated := func(name, format string, n int) []fhir.RawParam {
		ps := make([]fhir.RawParam, n)
		for i := range ps {
			ps[i] = fhir.RawParam{Name: name, Value: fmt.Sprintf(format, i)}
		}
		return ps
	}
	for _, c := range []struct {
		name   string
		params []fhir.RawParam
	}{
		{"id-1000", []fhir.RawParam{{Name: "_id", Value: list("p%d", 1000)}}},
		{"name-500", []fhir.RawParam{{Name: "name", Value: list("fam%d", 500)}}},
		{"identifier-1000", []fhir.RawParam{{Name: "identifier", Value: list("urn:sys|v%d", 1000)}}},
		{"birthdate-ge-1000", []fhir.RawParam{{Name: "birthdate", Value: list("ge2%03d", 1000)}}},
		{"and-50", repeated("birthdate", "gt1%03d", 50)},
		{"and-1000", repeated("birthdate", "gt1%03d", 1000)},
	} {
		q, err := reg.ParseQuery("Patient", c.params, fhirsearch.ParseOptions{Limits: fhirsearch.Limits{MaxRepeats: 1000, MaxParams: 1000}})
		if err != nil {
			b.Fatal(err)
		}
		q.Total = fhir.TotalAccurate
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := s.Search(ctx, q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
