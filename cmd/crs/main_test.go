package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"crs/fhir"
	"crs/fhir/search"
	"crs/fhir/store"
	"crs/fhir/store/sqlite"
	"crs/profiles"
)

// TestMain lets the test binary act as the crs server in a child process, so the
// tests can send it SIGTERM and SIGKILL like an operator would.
func TestMain(m *testing.M) {
	if args := os.Getenv("CRS_TEST_CHILD_ARGS"); args != "" {
		if err := run(strings.Fields(args), os.Stdout, os.Stderr); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child is a crs server running in a child process.
type child struct {
	cmd  *exec.Cmd
	base string
	exit chan error
}

func startChild(t *testing.T, dbPath string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CRS_TEST_CHILD_ARGS=serve --addr 127.0.0.1:0 --store sqlite:"+dbPath)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, exit: make(chan error, 1)}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "serving" {
				addr <- line.Addr
			}
		}
	}()
	go func() { c.exit <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	select {
	case a := <-addr:
		c.base = "http://" + a + "/fhir"
	case err := <-c.exit:
		t.Fatalf("server exited: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("server did not start")
	}
	return c
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/fhir+json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var obj struct{ ID string }
	_ = json.Unmarshal(b, &obj)
	return resp.StatusCode, obj.ID
}

// TestKill9KeepsAcknowledgedWrites: every create answered 201 before the server
// is killed with SIGKILL is there after a restart on the same file.
func TestKill9KeepsAcknowledgedWrites(t *testing.T) {
	db := filepath.Join(t.TempDir(), "crs.db")
	c := startChild(t, db)
	var ids []string
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := http.Post(c.base+"/Patient", "application/fhir+json",
				strings.NewReader(patientWithoutNHSNumber))
			if err != nil {
				return // the server is gone
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusCreated {
				var obj struct{ ID string }
				if json.Unmarshal(b, &obj) == nil {
					ids = append(ids, obj.ID)
				}
			}
		}
	}()
	time.Sleep(1500 * time.Millisecond)
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.exit
	close(stop)
	<-done
	if len(ids) < 10 {
		t.Fatalf("only %d acknowledged creates before the kill", len(ids))
	}
	c2 := startChild(t, db)
	for _, id := range ids {
		resp, err := http.Get(c2.base + "/Patient/" + id)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("acknowledged Patient/%s lost after kill -9: %d", id, resp.StatusCode)
		}
	}
	t.Logf("%d acknowledged creates all present after kill -9", len(ids))
}

// TestKill9KeepsAcknowledgedReadsAudited: during a burst of concurrent reads
// and creates, the server is killed with SIGKILL; after it, every read that
// was answered 200 and every create answered 201 has its AuditEvent on disk
// (found by its X-Request-Id), once — a create's from the pending record its
// transaction stored, if the kill came before its materialisation — and the
// hash chain verifies.
func TestKill9KeepsAcknowledgedReadsAudited(t *testing.T) {
	db := filepath.Join(t.TempDir(), "crs.db")
	c := startChild(t, db)
	status, id := post(t, c.base+"/Patient", `{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"}],"name":[{"family":"Read"}]}`)
	if status != http.StatusCreated {
		t.Fatalf("create: %d", status)
	}
	var mu sync.Mutex
	var acked []string
	creates := 0
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// send repeats a request, each with its own X-Request-Id (prefix-i),
	// until stop or the server is gone, and notes those answered want.
	send := func(prefix, method, url, body string, want int) {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			rid := fmt.Sprintf("%s-%d", prefix, i)
			req, _ := http.NewRequest(method, url, strings.NewReader(body))
			req.Header.Set("X-Request-Id", rid)
			if body != "" {
				req.Header.Set("Content-Type", "application/fhir+json")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return // the server is gone
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				mu.Lock()
				acked = append(acked, rid)
				if method == http.MethodPost {
					creates++
				}
				mu.Unlock()
			}
		}
	}
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go send(fmt.Sprintf("kill-read-%d", w), http.MethodGet, c.base+"/Patient/"+id, "", http.StatusOK)
	}
	wg.Add(1)
	go send("kill-create", http.MethodPost, c.base+"/Patient", patientWithoutNHSNumber, http.StatusCreated)
	time.Sleep(1500 * time.Millisecond)
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.exit
	close(stop)
	wg.Wait()
	if len(acked)-creates < 20 || creates < 3 {
		t.Fatalf("only %d acknowledged reads and %d creates before the kill", len(acked)-creates, creates)
	}
	// What the kill left between a write's commit and its AuditEvent.
	pending := countPendingAudits(t, db)
	// crs audit verify stores what the journal still holds and the pending
	// audit records, then checks the chain.
	var out, errOut bytes.Buffer
	if err := run([]string{"audit", "verify", "--store", "sqlite:" + db}, &out, &errOut); err != nil {
		t.Fatalf("crs audit verify after kill -9: %v\n%s%s", err, out.String(), errOut.String())
	}
	if left := countPendingAudits(t, db); left != 0 {
		t.Fatalf("%d writes' pending audit records left after crs audit verify", left)
	}
	st, err := openStore("sqlite:" + db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recorded := map[string]int{}
	cursor := ""
	for {
		page, err := st.History(context.Background(), store.HistoryQuery{Type: "AuditEvent", Count: 1000, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range page.Versions {
			var ev struct {
				Entity []struct {
					What struct{ Identifier struct{ Value string } }
				}
			}
			if err := json.Unmarshal(v.Body, &ev); err != nil {
				t.Fatal(err)
			}
			for _, e := range ev.Entity {
				if e.What.Identifier.Value != "" {
					recorded[e.What.Identifier.Value]++
				}
			}
		}
		if cursor = page.Next; cursor == "" {
			break
		}
	}
	for _, rid := range acked {
		if recorded[rid] != 1 {
			t.Fatalf("%s was answered but has %d AuditEvents on disk after kill -9, want 1", rid, recorded[rid])
		}
	}
	t.Logf("%d acknowledged reads and %d creates (%d writes' audit records still pending at the kill), each with its AuditEvent after kill -9; chain intact", len(acked)-creates, creates, pending)
}

// TestSIGTERMShutsDownGracefully: SIGTERM makes the server finish and exit 0.
func TestSIGTERMShutsDownGracefully(t *testing.T) {
	c := startChild(t, filepath.Join(t.TempDir(), "crs.db"))
	if status, _ := post(t, c.base+"/Patient", `{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"}]}`); status != http.StatusCreated {
		t.Fatalf("create: %d", status)
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.exit:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}

// TestMainInProcess starts Main on port 0 and serves a create and a read.
func TestMainInProcess(t *testing.T) {
	var logs bytes.Buffer
	m := &Main{
		Config: Config{Addr: "127.0.0.1:0", Store: "sqlite:" + filepath.Join(t.TempDir(), "d", "crs.db"), MaxBodyBytes: 1 << 20, MaxDepth: 64, DefaultCount: 20, MaxCount: 100},
		Log:    slog.New(slog.NewJSONHandler(&logs, nil)),
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	base := "http://" + m.Addr() + "/fhir"
	// Strict by default: a Goal that is not a CRS Goal is refused.
	if status, _ := post(t, base+"/Goal", `{"resourceType":"Goal","lifecycleStatus":"active","description":{"text":"walk to the shop"},"subject":{"reference":"Patient/p1"}}`); status != http.StatusUnprocessableEntity {
		t.Fatalf("strict: %d", status)
	}
	status, id := post(t, base+"/Patient", `{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9449305552"}]}`)
	if status != http.StatusCreated || id == "" {
		t.Fatalf("create: %d", status)
	}
	resp, err := http.Get(base + "/Patient/" + id)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Request-Id") == "" {
		t.Fatalf("read: %d %v", resp.StatusCode, resp.Header)
	}
	// The pathway's conformance resources are installed and searchable by url.
	resp, err = http.Get(base + "/StructureDefinition?url=" + profiles.DefaultCanonicalBase + "/StructureDefinition/CRS-Referral")
	if err != nil {
		t.Fatal(err)
	}
	var found struct{ Total int }
	_ = json.NewDecoder(resp.Body).Decode(&found)
	resp.Body.Close()
	if found.Total != 1 {
		t.Fatalf("StructureDefinition by url: %d", found.Total)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + m.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	if !strings.Contains(logs.String(), `"msg":"request"`) || !strings.Contains(logs.String(), `"request_id"`) {
		t.Fatalf("no request log lines: %s", logs.String())
	}
}

func TestFlagsAndEnvironment(t *testing.T) {
	t.Setenv("CRS_ADDR", "127.0.0.1:9999")
	t.Setenv("CRS_MAX_COUNT", "77")
	cfg, err := parseServeFlags([]string{"--store", "sqlite:/tmp/x.db"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:9999" || cfg.MaxCount != 77 || cfg.Store != "sqlite:/tmp/x.db" {
		t.Fatalf("config: %+v", cfg)
	}
	if _, err := parseServeFlags([]string{"--nonsense"}, io.Discard); err == nil {
		t.Fatal("unknown flag accepted")
	}
	if _, err := openStore("postgres://x"); err == nil {
		t.Fatal("unknown store accepted")
	}
}

// TestBadEnvironmentStopsTheStart: a CRS_* value that is not of its kind or
// range is an error naming the variable, never silently the default.
func TestBadEnvironmentStopsTheStart(t *testing.T) {
	for _, c := range []struct{ name, value string }{
		{"CRS_MAX_COUNT", "lots"},
		{"CRS_MAX_COUNT", "0"},
		{"CRS_DEFAULT_COUNT", "20x"},
		{"CRS_MAX_BODY_BYTES", "-5"},
		{"CRS_TOTAL_LIMIT", "-2"},
		{"CRS_AUDIT_QUEUE", "1e6"},
		{"CRS_INSECURE_NO_AUTH", "yes please"},
		{"CRS_PROFILE_ENFORCEMENT", "loose"},
		{"CRS_SQLITE_MMAP_MIB", "-2"},
		{"CRS_SQLITE_READ_CONNS", "two"},
	} {
		t.Run(c.name+"="+c.value, func(t *testing.T) {
			t.Setenv(c.name, c.value)
			_, err := parseServeFlags(nil, io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.name) {
				t.Errorf("%s=%q: %v, want an error naming %s", c.name, c.value, err, c.name)
			}
		})
	}
	t.Setenv("CRS_INSECURE_NO_AUTH", "true")
	t.Setenv("CRS_TOTAL_LIMIT", "-1")
	if cfg, err := parseServeFlags(nil, io.Discard); err != nil || !cfg.InsecureNoAuth || cfg.TotalLimit != -1 {
		t.Errorf("good values: %+v %v", cfg, err)
	}
}

// TestSQLiteFlags: --sqlite-mmap-mib and --sqlite-read-conns reach the
// store's options, in MiB, with -1 mapping nothing and 0 the store's defaults.
func TestSQLiteFlags(t *testing.T) {
	for _, c := range []struct {
		args  []string
		mmap  int64
		conns int
	}{
		{nil, sqlite.DefaultMmapBytes, 0},
		{[]string{"--sqlite-mmap-mib", "64", "--sqlite-read-conns", "2"}, 64 << 20, 2},
		{[]string{"--sqlite-mmap-mib", "-1"}, -1, 0},
		{[]string{"--sqlite-mmap-mib", "0"}, 0, 0},
	} {
		cfg, err := parseServeFlags(c.args, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		opt := cfg.sqliteOptions(nil)
		if opt.MmapBytes != c.mmap || opt.ReadConns != c.conns {
			t.Errorf("%v: mmap %d, read conns %d; want %d, %d", c.args, opt.MmapBytes, opt.ReadConns, c.mmap, c.conns)
		}
	}
}

// TestQueryLimitFlags checks the query limit flags, their environment
// variables and their defaults.
func TestQueryLimitFlags(t *testing.T) {
	t.Setenv("CRS_MAX_OR_VALUES", "50")
	cfg, err := parseServeFlags([]string{"--max-includes", "3", "--max-chain", "2"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := search.DefaultLimits
	want.MaxOr, want.MaxIncludes, want.MaxChain = 50, 3, 2
	if cfg.QueryLimits != want {
		t.Errorf("limits %+v, want %+v", cfg.QueryLimits, want)
	}
	if cfg.MaxConditionalDelete != 1 {
		t.Errorf("--max-conditional-delete defaults to %d, want 1", cfg.MaxConditionalDelete)
	}
	if _, err := parseServeFlags([]string{"--max-param-repeats", "0"}, io.Discard); err == nil {
		t.Error("--max-param-repeats 0 accepted")
	}
	if _, err := parseServeFlags([]string{"--max-query-values", "5001"}, io.Discard); err == nil {
		t.Error("--max-query-values 5001 accepted")
	}
}

// countPendingAudits is how many writes' pending audit records the SQLite
// file db holds: rows of its pending table and bookkeeping records (an
// earlier crs's).
func countPendingAudits(t *testing.T, db string) int {
	t.Helper()
	st, err := openStore("sqlite:" + db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	res, err := st.Search(context.Background(), &fhir.Query{Type: "CrsAuditPending", Count: 1, Total: fhir.TotalAccurate})
	if err != nil {
		t.Fatal(err)
	}
	seqs, _, err := st.(*sqlite.Store).PendingAudits(context.Background(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return res.Total + len(seqs)
}

// TestSQLitePageSizeFlag: --sqlite-page-size and CRS_SQLITE_PAGE_SIZE reach
// the store's options, the default is the store's, and a size below
// SQLite's smallest page is refused before anything is opened.
func TestSQLitePageSizeFlag(t *testing.T) {
	cfg, err := parseServeFlags(nil, io.Discard)
	if err != nil || cfg.sqliteOptions(nil).PageSize != sqlite.DefaultPageSize {
		t.Errorf("default: %d %v, want %d", cfg.SQLitePageSize, err, sqlite.DefaultPageSize)
	}
	if cfg, err := parseServeFlags([]string{"--sqlite-page-size", "2048"}, io.Discard); err != nil || cfg.sqliteOptions(nil).PageSize != 2048 {
		t.Errorf("--sqlite-page-size 2048: %d %v", cfg.SQLitePageSize, err)
	}
	t.Setenv("CRS_SQLITE_PAGE_SIZE", "1024")
	if cfg, err := parseServeFlags(nil, io.Discard); err != nil || cfg.sqliteOptions(nil).PageSize != 1024 {
		t.Errorf("CRS_SQLITE_PAGE_SIZE=1024: %d %v", cfg.SQLitePageSize, err)
	}
	if _, err := parseServeFlags([]string{"--sqlite-page-size", "256"}, io.Discard); err == nil {
		t.Error("--sqlite-page-size 256 accepted")
	}
}
