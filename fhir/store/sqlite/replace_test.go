package sqlite

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"crs/fhir"
	fsearch "crs/fhir/search"
	"crs/fhir/store"
)

// TestReplaceInBatch checks that updates inside one batch leave the same
// search values as the same writes committed one by one: a resource updated
// twice in the batch keeps only its last version's values, the values of
// the batch's other resources stay, and the denormalised keys of a carrier
// updated after its target (and of a target updated, which flushes) are
// what they would be. The whole of every index table is compared.
func TestReplaceInBatch(t *testing.T) {
	reg := fsearch.Default()
	ctx := context.Background()
	sr := func(id, status, org, pat string) string {
		return `{"resourceType":"ServiceRequest","id":"` + id + `","status":"` + status + `","intent":"plan","subject":{"reference":"Patient/` + pat + `"},"performer":[{"reference":"Organization/` + org + `"}],"requester":{"reference":"Organization/` + org + `"}}`
	}
	org := func(id, ods string) string {
		return `{"resourceType":"Organization","id":"` + id + `","identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"` + ods + `"}]}`
	}
	pat := func(id, family string) string {
		return `{"resourceType":"Patient","id":"` + id + `","name":[{"family":"` + family + `"}],"birthDate":"1950-01-0` + fmt.Sprint(len(family)%9+1) + `"}`
	}
	writes := []string{
		org("o1", "P1"), org("o2", "P2"),
		pat("pa", "Smith"), sr("s1", "draft", "o1", "pa"), pat("pb", "Jones"),
		sr("s1", "active", "o2", "pa"), // a carrier updated in the batch
		pat("pa", "Smythe"),            // updated, with others' rows buffered
		sr("s2", "active", "o1", "pb"),
		"search:ServiceRequest?status=active",
		pat("pa", "Smith-Jones"), // updated twice
		org("o1", "Q1"),          // a key target updated: flushes
		sr("s2", "revoked", "o2", "pb"),
		sr("s1", "completed", "o1", "pa"),
	}
	run := func(s *Store, oneBatch bool) {
		vids := map[string]int{}
		var fns []func(store.Tx) error
		for _, w := range writes {
			if q, ok := strings.CutPrefix(w, "search:"); ok {
				typ, param, _ := strings.Cut(q, "?")
				name, value, _ := strings.Cut(param, "=")
				fns = append(fns, func(tx store.Tx) error {
					query, err := reg.ParseQuery(typ, []fhir.RawParam{{Name: name, Value: value}}, fsearch.ParseOptions{})
					if err != nil {
						return err
					}
					_, err = tx.Search(ctx, query)
					return err
				})
				continue
			}
			obj, err := fhir.Parse([]byte(w), fhir.DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			index, err := reg.Extract(fhir.ResourceType(obj), obj)
			if err != nil {
				t.Fatal(err)
			}
			key := fhir.ResourceType(obj) + "/" + obj["id"].(string)
			vids[key]++
			v := store.Version{Type: fhir.ResourceType(obj), ID: obj["id"].(string), VersionID: vids[key],
				LastUpdated: time.Unix(1700000000, 0), Method: "PUT", Body: []byte(w)}
			fns = append(fns, func(tx store.Tx) error { return tx.Put(ctx, v, index) })
		}
		if oneBatch {
			err := s.Write(ctx, func(tx store.Tx) error {
				for _, fn := range fns {
					if err := fn(tx); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			return
		}
		for _, fn := range fns {
			if err := s.Write(ctx, fn); err != nil {
				t.Fatal(err)
			}
		}
	}
	batched, single := openTemp(t), openTemp(t)
	run(batched, true)
	run(single, false)
	for _, table := range indexTables {
		got, want := dumpTable(t, batched, table), dumpTable(t, single, table)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: in one batch\n%q\none by one\n%q", table, got, want)
		}
	}
	// And the values are the last versions' (not merely the same in both).
	for _, c := range []struct{ table, where string }{
		{"idx_string", "type = 'Patient' AND param = 'family' AND exact = 'Smith-Jones'"},
		{"idx_token", "type = 'ServiceRequest' AND param = 'status' AND code = 'completed'"},
		{"idx_token", "type = 'ServiceRequest' AND param = '~k1' AND code = 'Q1'"},
	} {
		if n := countRows(t, batched, c.table, c.where); n != 1 {
			t.Errorf("%s where %s: %d rows, want 1", c.table, c.where, n)
		}
	}
	for _, c := range []struct{ table, where string }{
		{"idx_string", "type = 'Patient' AND param = 'family' AND exact IN ('Smith', 'Smythe') AND rid IN (SELECT rid FROM current WHERE id = 'pa')"},
		{"idx_token", "type = 'ServiceRequest' AND param = 'status' AND code IN ('draft', 'active')"},
	} {
		if n := countRows(t, batched, c.table, c.where); n != 0 {
			t.Errorf("%s where %s: %d rows of replaced versions", c.table, c.where, n)
		}
	}
}

// dumpTable returns every row of an index table, in key order.
func dumpTable(t *testing.T, s *Store, table string) []string {
	t.Helper()
	var out []string
	for _, vals := range queryRows(t, s, "SELECT * FROM "+table) {
		out = append(out, fmt.Sprint(vals...))
	}
	return out
}

// queryRows returns every row query (with args) reads, each as its columns'
// values.
func queryRows(t *testing.T, s *Store, query string, args ...any) [][]any {
	t.Helper()
	rows, err := s.read.Query(query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out [][]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		out = append(out, vals)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func countRows(t testing.TB, s *Store, table, where string) int {
	t.Helper()
	var n int
	if err := s.read.QueryRow("SELECT count(*) FROM " + table + " WHERE " + where).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestUpdateLeavesExactlyNewValues checks, after every version of resources
// with values in every index table, that the index rows of the resource are
// exactly its current version's search values: values the versions share
// stay, changed ones are replaced, dropped ones go, and a deleted version
// leaves none.
func TestUpdateLeavesExactlyNewValues(t *testing.T) {
	reg := fsearch.Default()
	ctx := context.Background()
	s := openTemp(t)
	versions := map[string][]string{
		"Observation/o": {
			`{"resourceType":"Observation","id":"o","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/a"},"effectiveDateTime":"2026-01-01","valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}`,
			`{"resourceType":"Observation","id":"o","status":"amended","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/a"},"effectiveDateTime":"2026-01-01","valueQuantity":{"value":72.5,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}`,
			`{"resourceType":"Observation","id":"o","status":"amended","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/b"},"effectiveDateTime":"2026-01-02"}`,
			`{"resourceType":"Observation","id":"o","status":"amended","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/b"},"effectiveDateTime":"2026-01-02"}`,
		},
		"Patient/p": {
			`{"resourceType":"Patient","id":"p","name":[{"family":"Smith","given":["Ann"]}],"birthDate":"1950-01-01","gender":"female"}`,
			`{"resourceType":"Patient","id":"p","name":[{"family":"Smith","given":["Anne"]}],"birthDate":"1950-01-01","gender":"female"}`,
			"deleted",
			`{"resourceType":"Patient","id":"p","name":[{"family":"Jones"}],"birthDate":"1950-01-02"}`,
		},
		"Questionnaire/q": {
			`{"resourceType":"Questionnaire","id":"q","status":"active","url":"https://example.org/q/1","name":"one"}`,
			`{"resourceType":"Questionnaire","id":"q","status":"active","url":"https://example.org/q/2","name":"one"}`,
		},
	}
	check := func(key, body string) {
		t.Helper()
		typ, id, _ := strings.Cut(key, "/")
		var want []string
		if body != "deleted" {
			obj, err := fhir.Parse([]byte(body), fhir.DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			index, err := reg.Extract(typ, obj)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for _, iv := range index {
				table, r, err := indexRow(0, typ, iv)
				if err != nil {
					t.Fatal(err)
				}
				k := table + " " + fmt.Sprint(r[1:]...)
				if !seen[k] {
					seen[k] = true
					want = append(want, k)
				}
			}
		}
		var got []string
		for _, table := range indexTables {
			for _, vals := range queryRows(t, s, "SELECT * FROM "+table+" WHERE rid = (SELECT rid FROM current WHERE type = ? AND id = ?)", typ, id) {
				got = append(got, table+" "+fmt.Sprint(vals[1:]...))
			}
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: index rows\n%q\nwant the current version's values\n%q", key, got, want)
		}
	}
	for key, bodies := range versions {
		typ, id, _ := strings.Cut(key, "/")
		for i, body := range bodies {
			v := store.Version{Type: typ, ID: id, VersionID: i + 1, LastUpdated: time.Unix(1700000000, 0), Method: "PUT"}
			var index []fhir.IndexValue
			if body == "deleted" {
				v.Deleted, v.Method = true, "DELETE"
			} else {
				obj, err := fhir.Parse([]byte(body), fhir.DefaultLimits)
				if err != nil {
					t.Fatal(err)
				}
				if index, err = reg.Extract(typ, obj); err != nil {
					t.Fatal(err)
				}
				v.Body = []byte(body)
			}
			if err := s.Write(ctx, func(tx store.Tx) error { return tx.Put(ctx, v, index) }); err != nil {
				t.Fatal(err)
			}
			check(key, body)
		}
	}
}
