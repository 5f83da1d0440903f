package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"crs/fhir/store/sqlite"
)

// TestSecondServeRefused: a second crs on the same SQLite file refuses to start
// and names the process holding it.
func TestSecondServeRefused(t *testing.T) {
	db := filepath.Join(t.TempDir(), "crs.db")
	c := startChild(t, db)
	cfg, err := parseServeFlags([]string{"--addr", "127.0.0.1:0", "--store", "sqlite:" + db}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m := &Main{Config: cfg, Log: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	err = m.Start(context.Background())
	if err == nil {
		m.Close()
		t.Fatal("a second server started on the same SQLite file")
	}
	if want := "in use by process " + strconv.Itoa(c.cmd.Process.Pid); !strings.Contains(err.Error(), want) {
		t.Fatalf("refusal %q does not say %q", err, want)
	}
	// Once the holder has gone, the file is free.
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	<-c.exit
	m = &Main{Config: cfg, Log: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	if err := m.Start(context.Background()); err != nil {
		t.Fatalf("start after the holder stopped: %v", err)
	}
	m.Close()
}

// patientWithoutNHSNumber is a valid CRS Patient that can be created any number
// of times (one active Patient holds an NHS number; this one has none).
const patientWithoutNHSNumber = `{"resourceType":"Patient","extension":[{"url":"https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberUnavailableReason",` +
	`"valueCodeableConcept":{"coding":[{"system":"https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberUnavailableReason","code":"overseas-patient"}]}}],"name":[{"family":"During"}]}`

// TestBackupWhileServingAndRestore: crs backup copies the store while the
// server writes to it; the copy holds every record acknowledged before it and
// an intact audit trail; restoring it (copy back while stopped) serves them.
func TestBackupWhileServingAndRestore(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "crs.db")
	c := startChild(t, db)
	code, id := post(t, c.base+"/Patient", `{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"}],"name":[{"family":"Before"}]}`)
	if code != http.StatusCreated {
		t.Fatalf("create: %d", code)
	}
	// Writes keep going while the backup runs.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := http.Post(c.base+"/Patient", "application/fhir+json", strings.NewReader(patientWithoutNHSNumber))
			if err != nil {
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				t.Errorf("write during the backup: %d", resp.StatusCode)
				return
			}
		}
	}()
	time.Sleep(100 * time.Millisecond)
	backup := filepath.Join(dir, "backup.db")
	var out, errOut bytes.Buffer
	err := run([]string{"backup", "--store", "sqlite:" + db, backup}, &out, &errOut)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("crs backup: %v %s", err, errOut.String())
	}
	if err := run([]string{"backup", "--store", "sqlite:" + db, backup}, &out, &errOut); err == nil {
		t.Error("crs backup overwrote an existing file")
	}

	// The writes' audit records not yet stored as AuditEvents when the copy
	// was made are in it as pending records: crs audit verify (as a start
	// would) stores them, then checks the chain.
	out.Reset()
	errOut.Reset()
	if err := run([]string{"audit", "verify", "--store", "sqlite:" + backup}, &out, &errOut); err != nil {
		t.Fatalf("crs audit verify of the backup: %v %s", err, errOut.String())
	}
	st, err := sqlite.Open(backup, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Read(context.Background(), "Patient", id); err != nil {
		t.Errorf("the backup lacks Patient/%s: %v", id, err)
	}
	n, err := VerifyAuditTrail(context.Background(), st)
	if err != nil || n == 0 {
		t.Errorf("the backup's audit trail: %d events, %v", n, err)
	}
	st.Close()

	// Restore: stop, put the copy in place, start.
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	<-c.exit
	for _, suffix := range []string{"-wal", "-shm"} {
		_ = os.Remove(db + suffix)
	}
	data, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(db, data, 0o644); err != nil {
		t.Fatal(err)
	}
	c = startChild(t, db)
	resp, err := http.Get(c.base + "/Patient/" + id)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("read after restore: %d", resp.StatusCode)
	}
}
