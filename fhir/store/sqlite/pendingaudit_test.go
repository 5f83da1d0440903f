package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"crs/fhir"
	"crs/fhir/store"
)

// TestPendingAudits: a pending audit row is stored with its transaction or
// not at all; rows come back oldest first; a delete removes exactly the
// rows named, and one naming a row already gone fails (and removes
// nothing), so that no record is stored as an AuditEvent twice.
func TestPendingAudits(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	put := func(bodies ...string) error {
		return s.Write(ctx, func(tx store.Tx) error {
			for _, b := range bodies {
				if err := tx.(*txn).PutPendingAudit(ctx, []byte(b)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := put("a", "b", "c"); err != nil {
		t.Fatal(err)
	}
	failed := errors.New("the write failed")
	if err := s.Write(ctx, func(tx store.Tx) error {
		if err := tx.(*txn).PutPendingAudit(ctx, []byte("rolled back")); err != nil {
			return err
		}
		return failed
	}); !errors.Is(err, failed) {
		t.Fatalf("failed write: %v", err)
	}
	if err := put("d"); err != nil {
		t.Fatal(err)
	}
	rows := func() ([]int64, []string) {
		seqs, bodies, err := s.PendingAudits(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		var bs []string
		for _, b := range bodies {
			bs = append(bs, string(b))
		}
		return seqs, bs
	}
	seqs, bodies := rows()
	if fmt.Sprint(bodies) != "[a b c d]" {
		t.Fatalf("pending rows %v, want [a b c d] (the rolled-back one absent)", bodies)
	}
	if got, _, _ := s.PendingAudits(ctx, 2); len(got) != 2 || got[0] != seqs[0] {
		t.Fatalf("a limit of 2 gave %v of %v", got, seqs)
	}
	del := func(seqs ...int64) error {
		return s.Write(ctx, func(tx store.Tx) error { return tx.(*txn).DeletePendingAudits(ctx, seqs) })
	}
	if err := del(seqs[0], seqs[2]); err != nil {
		t.Fatal(err)
	}
	if _, bodies := rows(); fmt.Sprint(bodies) != "[b d]" {
		t.Fatalf("after deleting a and c: %v", bodies)
	}
	if err := del(seqs[1], seqs[2]); fhir.KindOf(err) != fhir.Internal {
		t.Fatalf("deleting a row already gone: %v, want an internal error", err)
	}
	if got, bodies := rows(); fmt.Sprint(bodies) != "[b d]" || !slices.Contains(got, seqs[1]) {
		t.Fatalf("a failed delete removed rows: %v", bodies)
	}
	if err := del(seqs[1], seqs[3]); err != nil {
		t.Fatal(err)
	}
	if got, _ := rows(); len(got) != 0 {
		t.Fatalf("%d rows left", len(got))
	}
	// Keys after the table emptied still come after any row left: a new row
	// is the newest.
	if err := put("e", "f"); err != nil {
		t.Fatal(err)
	}
	if _, bodies := rows(); fmt.Sprint(bodies) != "[e f]" {
		t.Fatalf("after refilling: %v", bodies)
	}
}

// BenchmarkPendingAuditWrite measures what a write's pending audit record
// adds to the write's commit: each op is one commit of a Patient with a
// search value, with no pending record ("none"), with one as a bookkeeping
// record (Put of a CrsAuditPending version: "record", the layout before the
// pending table) or as a row of the pending table ("table"). cpu-us/op is
// the process's CPU per commit, without its fsync (NoSync: the fsync's
// system time, the same for all three, would drown the difference);
// wal-pages/op is the WAL frames each commit appends (measured on 200
// further commits, the WAL emptied before each by a checkpoint from a side
// connection).
func BenchmarkPendingAuditWrite(b *testing.B) {
	for _, mode := range []string{"none", "record", "table"} {
		b.Run(mode, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "crs.db")
			s, err := Open(path, Options{NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			index := []fhir.IndexValue{{Param: "family", Type: fhir.TypeString, Str: "bench", Exact: "Bench"}}
			body := []byte(`{"id":"01938f2a-0000-7000-8000-000000000000","r":{"i":"create","a":"C","e":["Patient/p/_history/1"]},"t":1700000000000}`)
			n := 0
			write := func() {
				n++
				id := fmt.Sprint("p", n)
				if err := s.Write(ctx, func(tx store.Tx) error {
					p := store.Version{Type: "Patient", ID: id, VersionID: 1, LastUpdated: time.Unix(1700000000, 0), Method: "POST", Body: []byte(`{"resourceType":"Patient"}`)}
					if err := tx.Put(ctx, p, index); err != nil {
						return err
					}
					switch mode {
					case "record":
						return tx.Put(ctx, store.Version{Type: "CrsAuditPending", ID: "a" + id, VersionID: 1, LastUpdated: time.Unix(1700000000, 0), Method: "POST", Body: body}, nil)
					case "table":
						return tx.(*txn).PutPendingAudit(ctx, body)
					}
					return nil
				}); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			cpu0 := purgeCPU(b)
			for i := 0; i < b.N; i++ {
				write()
			}
			b.StopTimer()
			b.ReportMetric(float64(purgeCPU(b)-cpu0)/1e3/float64(b.N), "cpu-us/op")
			side, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
			if err != nil {
				b.Fatal(err)
			}
			defer side.Close()
			side.SetMaxOpenConns(1)
			frames := 0
			const sample = 200
			for i := 0; i < sample; i++ {
				if _, err := side.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
					b.Fatal(err)
				}
				write()
				var busy, log, done int
				if err := side.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &log, &done); err != nil {
					b.Fatal(err)
				}
				frames += log
			}
			b.ReportMetric(float64(frames)/sample, "wal-pages/op")
		})
	}
}
