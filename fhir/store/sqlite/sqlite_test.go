package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"crs/fhir/store"
	"crs/fhir/store/sqlite"
	"crs/fhir/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := sqlite.Open(filepath.Join(t.TempDir(), "crs.db"), sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestOnCommit: the commit hook sees every committed write call, concurrent
// ones grouped, and a failing call is not counted as committed.
func TestOnCommit(t *testing.T) {
	var mu sync.Mutex
	writes, commits := 0, 0
	s, err := sqlite.Open(filepath.Join(t.TempDir(), "crs.db"), sqlite.Options{OnCommit: func(n int, d time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil || d <= 0 {
			t.Errorf("commit of %d writes: %v, %v", n, d, err)
		}
		writes += n
		commits++
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := store.Version{Type: "Patient", ID: fmt.Sprint("p", i), VersionID: 1, LastUpdated: time.Now(), Method: "POST", Body: []byte(`{"resourceType":"Patient"}`)}
			if err := s.Write(ctx, func(tx store.Tx) error { return tx.Put(ctx, v, nil) }); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if err := s.Write(ctx, func(store.Tx) error { return errors.New("refused") }); err == nil {
		t.Fatal("a failing write call succeeded")
	}
	mu.Lock()
	defer mu.Unlock()
	if writes != 20 || commits < 1 || commits > 20 {
		t.Fatalf("hook saw %d writes in %d commits, want 20 writes", writes, commits)
	}
}

// TestConformanceWalking runs the conformance suite with every page that has a
// driving parameter served by a walk (the plan a large driving set takes), with
// a budget of the driving set's size, so that small data exercises both the
// walk and its handover to the driving-set plan.
func TestConformanceWalking(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := sqlite.Open(filepath.Join(t.TempDir(), "crs.db"), sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		sqlite.SetWalkFrom(s, 0)
		return s
	})
}

// TestConformanceNoKeys runs the suite on a store that keeps no denormalised
// keys, so that the keys' group is proven against the chains themselves.
func TestConformanceNoKeys(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := sqlite.Open(filepath.Join(t.TempDir(), "crs.db"), sqlite.Options{NoKeys: true})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
