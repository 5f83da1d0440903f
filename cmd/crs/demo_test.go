package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemoCommand: crs demo loads a region into an empty store, refuses a
// second load, and loads again with --force.
func TestDemoCommand(t *testing.T) {
	store := "sqlite:" + filepath.Join(t.TempDir(), "crs.db")
	var out, errb bytes.Buffer
	if err := run([]string{"demo", "--store", store, "--episodes", "15"}, &out, &errb); err != nil {
		t.Fatalf("first load: %v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "loaded the demo region (seed 1): 15 episodes") {
		t.Errorf("output: %q", out.String())
	}
	err := run([]string{"demo", "--store", store, "--episodes", "15"}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("second load without --force: %v, want a refusal that names --force", err)
	}
	if err := run([]string{"demo", "--store", store, "--episodes", "15", "--force"}, &out, &errb); err != nil {
		t.Errorf("load with --force: %v", err)
	}
}
