package sqlite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"crs/fhir"
	"crs/fhir/store"
)

// TestWALCheckpoint: the writer's commits checkpoint at walCheckpointPages,
// and the WAL stays bounded by it: written well past three intervals, the
// WAL file is reused, not grown, and everything written reads back.
func TestWALCheckpoint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crs.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	var got int
	if err := s.Write(ctx, func(tx store.Tx) error {
		return tx.(*txn).conn.QueryRowContext(ctx, `PRAGMA wal_autocheckpoint`).Scan(&got)
	}); err != nil {
		t.Fatal(err)
	}
	var pageSize int64
	if err := s.read.QueryRow(`PRAGMA page_size`).Scan(&pageSize); err != nil {
		t.Fatal(err)
	}
	if pageSize != DefaultPageSize || got != walCheckpointPages {
		t.Fatalf("the writer checkpoints at %d pages of %d bytes, want %d of %d", got, pageSize, walCheckpointPages, DefaultPageSize)
	}
	// Each write's body fills about two pages of its own: 8,000 writes are
	// well over three intervals of WAL frames.
	body := fmt.Appendf(nil, `{"resourceType":"Basic","text":%q}`, string(make([]byte, 6000)))
	const writes, per = 400, 20
	for w := range writes {
		if err := s.Write(ctx, func(tx store.Tx) error {
			for i := range per {
				v := store.Version{Type: "Basic", ID: fmt.Sprintf("b%d-%d", w, i), VersionID: 1, LastUpdated: time.Now(), Method: "POST", Body: body}
				if err := tx.Put(ctx, v, []fhir.IndexValue{{Param: "_id", Type: fhir.TypeToken, Code: v.ID}}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	written := int64(writes*per) * int64(len(body))
	// A checkpoint runs after the commit that passes the interval: the WAL
	// holds at most the interval plus one commit's frames.
	limit := (int64(walCheckpointPages) + 200) * (pageSize + 24)
	if fi.Size() > limit || fi.Size() >= written/2 {
		t.Errorf("WAL file %d bytes after %d bytes written, want at most %d", fi.Size(), written, limit)
	}
	if v, err := s.Read(ctx, "Basic", fmt.Sprintf("b%d-%d", writes-1, per-1)); err != nil || len(v.Body) != len(body) {
		t.Errorf("last write read back: %v", err)
	}
}
