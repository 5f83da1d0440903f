package sqlite_test

import (
	"path/filepath"
	"testing"

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
