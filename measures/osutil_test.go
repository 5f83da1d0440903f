package measures

import (
	"os"
	"testing"
)

var sharedDir string

func osMkdirTemp() (string, error) { return os.MkdirTemp(sharedDir, "region-") }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "crs-measures-")
	if err != nil {
		panic(err)
	}
	sharedDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
