package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"crs/fhir"
	"crs/fhir/store"
)

// pageFacts reads the page size and the writer's checkpoint interval of s.
func pageFacts(t *testing.T, s *Store) (pageSize, walAuto int) {
	t.Helper()
	ctx := context.Background()
	if err := s.Write(ctx, func(tx store.Tx) error {
		conn := tx.(*txn).conn
		if err := conn.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&pageSize); err != nil {
			return err
		}
		return conn.QueryRowContext(ctx, `PRAGMA wal_autocheckpoint`).Scan(&walAuto)
	}); err != nil {
		t.Fatal(err)
	}
	return pageSize, walAuto
}

// putAndRead stores one Patient named id in s and reads it back.
func putAndRead(t *testing.T, s *Store, id string) {
	t.Helper()
	ctx := context.Background()
	v := store.Version{Type: "Patient", ID: id, VersionID: 1, LastUpdated: time.Now(), Method: "POST", Body: []byte(`{"resourceType":"Patient","id":"` + id + `"}`)}
	if err := s.Write(ctx, func(tx store.Tx) error {
		return tx.Put(ctx, v, []fhir.IndexValue{{Param: "_id", Type: fhir.TypeToken, Code: id}})
	}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Read(ctx, "Patient", id); err != nil || string(got.Body) != string(v.Body) {
		t.Fatalf("read %s back: %v", id, err)
	}
}

// TestPageSizeNew: a new database gets the page size asked for (the
// default when none is), and its WAL checkpoints after the same bytes as
// 4,000 pages of 4 KiB.
func TestPageSizeNew(t *testing.T) {
	for _, tc := range []struct{ ask, want int }{{0, DefaultPageSize}, {1024, 1024}, {2048, 2048}, {4096, 4096}, {8192, 8192}} {
		t.Run(fmt.Sprint(tc.ask), func(t *testing.T) {
			s, err := Open(filepath.Join(t.TempDir(), "crs.db"), Options{NoSync: true, PageSize: tc.ask})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			size, auto := pageFacts(t, s)
			if size != tc.want {
				t.Errorf("page size %d, want %d", size, tc.want)
			}
			if auto*size != walCheckpointPages*4096 {
				t.Errorf("checkpoint at %d pages of %d bytes, want %d bytes", auto, size, walCheckpointPages*4096)
			}
			putAndRead(t, s, "p1")
		})
	}
}

// TestPageSizeExisting: opening an existing database never changes its page
// size and never fails, whatever page size is asked: one the store made in
// WAL mode, and one made elsewhere in rollback mode.
func TestPageSizeExisting(t *testing.T) {
	for _, tc := range []struct{ made, ask int }{{4096, 1024}, {1024, 0}, {2048, 8192}, {8192, 2048}} {
		t.Run(fmt.Sprintf("wal-%d-%d", tc.made, tc.ask), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "crs.db")
			s, err := Open(path, Options{NoSync: true, PageSize: tc.made})
			if err != nil {
				t.Fatal(err)
			}
			putAndRead(t, s, "p1")
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s, err = Open(path, Options{NoSync: true, PageSize: tc.ask})
			if err != nil {
				t.Fatalf("reopen asking %d: %v", tc.ask, err)
			}
			defer s.Close()
			if size, auto := pageFacts(t, s); size != tc.made || auto != walPages(tc.made) {
				t.Errorf("reopened asking %d: page size %d checkpoint %d, want %d and %d", tc.ask, size, auto, tc.made, walPages(tc.made))
			}
			if _, err := s.Read(context.Background(), "Patient", "p1"); err != nil {
				t.Errorf("the first open's write: %v", err)
			}
			putAndRead(t, s, "p2")
		})
	}
	t.Run("rollback-8192-1024", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "crs.db")
		db, err := sql.Open("sqlite", "file:"+url.PathEscape(path)+"?_pragma=page_size(8192)")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`CREATE TABLE other (a)`); err != nil {
			t.Fatal(err)
		}
		db.Close()
		s, err := Open(path, Options{NoSync: true, PageSize: 1024})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if size, _ := pageFacts(t, s); size != 8192 {
			t.Errorf("page size %d, want the file's 8192", size)
		}
		putAndRead(t, s, "p1")
	})
}

// TestPageSizeInvalid: a page size SQLite would silently ignore is refused,
// and no database is left behind half made.
func TestPageSizeInvalid(t *testing.T) {
	for _, n := range []int{-4096, 256, 1000, 3072, 131072} {
		path := filepath.Join(t.TempDir(), "crs.db")
		if s, err := Open(path, Options{PageSize: n}); err == nil {
			s.Close()
			t.Errorf("page size %d accepted", n)
		}
		if _, err := os.Stat(path); err == nil {
			t.Errorf("page size %d left a database behind", n)
		}
	}
}
