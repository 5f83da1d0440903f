package sqlite

import (
	"database/sql"
	"fmt"
	"math/rand"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestSortRowsIsKeyOrder checks that sortRows puts each index table's rows in
// the order SQLite keeps them, the order of the table's primary key: rows are
// inserted shuffled, read back in key order, and compared with sortRows's
// order of the same shuffled rows. Values mix case, accents, prefixes,
// negative and fractional numbers, and equal leading columns, so that a
// wrong column in pkColumns, or a comparison unlike SQLite's, fails.
func TestSortRowsIsKeyOrder(t *testing.T) {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "order.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range schema {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	strs := []string{"", "a", "A", "b", "ab", "é", "e", "Z", "a b", "a\u00a0b"}
	ints := []int64{-5, 0, 3, 1 << 40}
	floats := []float64{-1.5, 0, 0.25, 2, 1e300}
	rnd := rand.New(rand.NewSource(1))
	pick := func(col string) any {
		switch col {
		case "rid":
			return int64(1 + rnd.Intn(4))
		case "lo", "hi":
			return ints[rnd.Intn(len(ints))]
		case "num":
			return floats[rnd.Intn(len(floats))]
		}
		return strs[rnd.Intn(len(strs))]
	}
	for _, table := range indexTables {
		cols, pk := columnsOf(t, db, table)
		if len(cols) != indexColumns[table] || !reflect.DeepEqual(pk, pkColumns[table]) {
			t.Fatalf("%s: columns %v, key %v; indexColumns %d, pkColumns %v", table, cols, pk, indexColumns[table], pkColumns[table])
		}
		var rows [][]any
		for range 300 {
			r := make([]any, len(cols))
			for i, c := range cols {
				r[i] = pick(c)
				if table == "idx_number" && (c == "lo" || c == "hi") {
					r[i] = floats[rnd.Intn(len(floats))]
				}
			}
			rows = append(rows, r)
		}
		// The key's columns, by name, in key order, as SQLite reads them.
		var key []string
		for _, c := range pk {
			key = append(key, cols[c])
		}
		ins := "INSERT OR IGNORE INTO " + table + " VALUES (" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
		for _, r := range rows {
			if _, err := db.Exec(ins, r...); err != nil {
				t.Fatalf("%s: %v", table, err)
			}
		}
		got, err := db.Query("SELECT " + strings.Join(cols, ", ") + " FROM " + table + " ORDER BY " + strings.Join(key, ", "))
		if err != nil {
			t.Fatal(err)
		}
		var stored []string
		for got.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := got.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			stored = append(stored, fmt.Sprint(vals...))
		}
		got.Close()
		sortRows(table, rows)
		var sorted []string
		for i, r := range rows {
			s := fmt.Sprint(r...)
			if i > 0 && s == sorted[len(sorted)-1] {
				continue // a duplicate INSERT OR IGNORE dropped
			}
			sorted = append(sorted, s)
		}
		if !reflect.DeepEqual(stored, sorted) {
			t.Errorf("%s: sortRows order differs from the key's:\nstored %q\nsorted %q", table, stored, sorted)
		}
	}
}

// columnsOf lists a table's columns in order, and the positions of its
// primary key's columns in key order, as SQLite declares them.
func columnsOf(t *testing.T, db *sql.DB, table string) (cols []string, pk []int) {
	t.Helper()
	rows, err := db.Query("SELECT name, pk FROM pragma_table_info('" + table + "') ORDER BY cid")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	at := map[int]int{} // key position (1-based) → column
	for rows.Next() {
		var c string
		var k int
		if err := rows.Scan(&c, &k); err != nil {
			t.Fatal(err)
		}
		if k > 0 {
			at[k] = len(cols)
		}
		cols = append(cols, c)
	}
	for k := 1; k <= len(at); k++ {
		pk = append(pk, at[k])
	}
	return cols, pk
}
