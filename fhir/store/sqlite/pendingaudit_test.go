package sqlite

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

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
