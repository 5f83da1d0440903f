package sqlite

import (
	"path/filepath"
	"testing"
)

// TestMmapSize: the read connections map what Options.MmapBytes says, the
// default when it is zero, nothing when it is negative.
func TestMmapSize(t *testing.T) {
	for _, tc := range []struct {
		opt  int64
		want int64
	}{
		{0, DefaultMmapBytes},
		{64 << 20, 64 << 20},
		{-1, 0},
	} {
		s, err := Open(filepath.Join(t.TempDir(), "crs.db"), Options{MmapBytes: tc.opt})
		if err != nil {
			t.Fatal(err)
		}
		var got int64
		if err := s.read.QueryRow(`PRAGMA mmap_size`).Scan(&got); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if got != tc.want {
			t.Errorf("MmapBytes %d: read connections map %d bytes, want %d", tc.opt, got, tc.want)
		}
	}
}
