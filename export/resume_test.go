package export

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"crs/auth"
	"crs/mapping/mappingtest"
)

// TestCrashMidRunResumesCleanly: a server that died while a job was
// writing its files (the job still "running" on disk, part of its NDJSON
// written) runs the job again from the start at the next start, and the
// manifest lists only the new run's files, none of the dead run's.
func TestCrashMidRunResumesCleanly(t *testing.T) {
	env := mappingtest.New(t, "testdata/fixtures.json")
	dir := t.TempDir()
	m := newManager(t, env, dir)
	m.gate = make(chan struct{})
	id, err := kickoff(t, m, env.Admin, LevelSystem, "", "_type=Patient,Goal")
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	// What the dead run left: a half-written file of each type.
	for name, body := range map[string]string{"Patient-1.ndjson": `{"resourceType":"Patient","id":"half-writ`, "Goal-3.ndjson": `{"resourceType":"Goal","id":"stale"}` + "\n"} {
		if err := os.WriteFile(filepath.Join(dir, id, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	m2 := newManager(t, env, dir) // resumes the job at once
	defer m2.Close()
	ctx := auth.WithPrincipal(context.Background(), env.Admin)
	if st, err := m2.Status(ctx, id); err != nil || (st.Running && st.Manifest != nil) {
		t.Fatalf("a resumed job's status: %+v %v", st, err)
	}
	man := wait(t, m2, env.Admin, id)
	got := lines(t, m2, env.Admin, man, "output")
	if len(got["Patient"]) != 2 {
		t.Errorf("resumed export's Patients: %v", got["Patient"])
	}
	for _, l := range append(got["Patient"], got["Goal"]...) {
		if strings.Contains(l, "half-writ") || strings.Contains(l, "stale") {
			t.Errorf("the dead run's output was served: %s", l)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, id, "Goal-3.ndjson")); !os.IsNotExist(err) {
		t.Errorf("the dead run's file is kept: %v", err)
	}
}
