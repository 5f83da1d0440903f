package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMakeCleanKeepsData runs the Makefile's clean and destroy-data targets in a
// scratch directory: clean never touches ./data, destroy-data refuses without a
// terminal and deletes only with CONFIRM=yes.
func TestMakeCleanKeepsData(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	src, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Makefile"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "data", "crs.db")
	if err := os.MkdirAll(filepath.Dir(db), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(db, []byte("records"), 0o644); err != nil {
		t.Fatal(err)
	}
	mk := func(args ...string) (string, error) {
		cmd := exec.Command("make", append([]string{"-s", "-C", dir}, args...)...)
		cmd.Stdin = nil // not a terminal
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := mk("clean"); err != nil {
		t.Fatalf("make clean: %v\n%s", err, out)
	}
	if _, err := os.Stat(db); err != nil {
		t.Fatalf("make clean deleted the database: %v", err)
	}
	out, err := mk("destroy-data")
	if err == nil || !strings.Contains(out, "CONFIRM=yes") {
		t.Fatalf("destroy-data without a terminal: err %v, output %q; want a refusal naming CONFIRM=yes", err, out)
	}
	if _, err := os.Stat(db); err != nil {
		t.Fatalf("a refused destroy-data deleted the database: %v", err)
	}
	if out, err := mk("destroy-data", "CONFIRM=yes"); err != nil {
		t.Fatalf("make destroy-data CONFIRM=yes: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Dir(db)); !os.IsNotExist(err) {
		t.Fatalf("destroy-data CONFIRM=yes left ./data: %v", err)
	}
}
