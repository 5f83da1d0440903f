package sqlite

import (
	"path/filepath"
	"testing"
)

// openTemp opens a store with the default options in the test's temporary
// directory, closed when the test ends.
func openTemp(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "crs.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
