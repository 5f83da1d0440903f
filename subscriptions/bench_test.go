package subscriptions_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"crs/auth"
	"crs/fhir"
	"crs/fhir/engine"
	"crs/subscriptions"
)

// okReceiver answers 200 at once and counts what it was sent.
type okReceiver struct {
	*httptest.Server
	handshakes atomic.Int64
	mu         sync.Mutex
	latencies  []time.Duration // per event: arrival - the write's lastUpdated
}

func newOKReceiver(b *testing.B) *okReceiver {
	r := &okReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		now := time.Now()
		var bundle struct {
			Entry []struct {
				Resource struct {
					Parameter []struct {
						Name      string `json:"name"`
						ValueCode string `json:"valueCode"`
						Part      []struct {
							Name         string `json:"name"`
							ValueInstant string `json:"valueInstant"`
						} `json:"part"`
					} `json:"parameter"`
				} `json:"resource"`
			} `json:"entry"`
		}
		if json.Unmarshal(body, &bundle) == nil && len(bundle.Entry) > 0 {
			for _, p := range bundle.Entry[0].Resource.Parameter {
				if p.Name == "type" && p.ValueCode == "handshake" {
					r.handshakes.Add(1)
				}
				if p.Name != "notification-event" {
					continue
				}
				for _, part := range p.Part {
					if part.Name == "timestamp" {
						at, err := time.Parse(time.RFC3339Nano, part.ValueInstant)
						if err == nil {
							r.mu.Lock()
							r.latencies = append(r.latencies, now.Sub(at))
							r.mu.Unlock()
						}
					}
				}
			}
		}
		w.WriteHeader(http.StatusOK)
	}))
	b.Cleanup(r.Close)
	return r
}

// BenchmarkWriteWithSubscriptions: the cost of a CarePlan update (strict
// profiles, access policy, audit, SQLite without fsync) with no
// subscription, and with 10,000 (CRS_BENCH_SUBSCRIPTIONS) active
// careplan-changed subscriptions that the write does not concern:
//   - per-person: each filtered on another person (a DSCR per person): the
//     outbox finds the candidates by the written resource's references, so
//     their number does not matter;
//   - one-provider: no filter, all of another care provider (VN2B3, whose
//     policy does not reach Alice), made by 100 clients: the outbox judges
//     the write once for all the subscriptions with the same topic, filter
//     and owner organisation and roles (judgeKey);
//   - stored-off: the one-provider subscriptions stored with status off,
//     none of them active. Its database is about a sixth of an active
//     case's (8,900 pages against 52,800 at 10,000: activating a
//     subscription writes about three AuditEvents and its state's
//     versions), so one-provider / stored-off is not what being active
//     costs: was-active is that case's control;
//   - was-active: the one-provider subscriptions made active, then turned
//     off by their owners: the database holds what one-provider's does (the
//     handshakes' AuditEvents, the state rows' versions), and one version
//     more of each Subscription, with none of them active: the control of
//     the active cases;
//   - groups: the control of stored-off without Subscriptions: as many
//     Groups of the same size (groupJSON), created by the same clients in
//     transactions of 100 through the same audited path, and no
//     subscription: the ratio groups / subscriptions=0 is what a database
//     grown by that many other resources costs a write, which is not the
//     subscriptions' doing.
//
// Report the ratios to subscriptions=0 (cpu-µs/write is the less
// load-sensitive figure).
func BenchmarkWriteWithSubscriptions(b *testing.B) {
	for _, c := range writeCases() {
		b.Run(c.name, func(b *testing.B) {
			e, ctx := setUpWriteCase(b, c)
			b.ResetTimer()
			stop := profileTimed(b, c.name)
			cpu0, w0 := cpuTime(), bytesWritten()
			for i := 0; i < b.N; i++ {
				if _, err := e.eng.Update(ctx, "CarePlan", "cp-alice", carePlan("cp-alice", "alice", "alice-ref", fmt.Sprintf("change %d", i)), 0); err != nil {
					b.Fatal(err)
				}
			}
			cpu, w := cpuTime()-cpu0, bytesWritten()-w0
			stop()
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/write")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
			b.ReportMetric(float64(w)/1024/float64(b.N), "written-KiB/write")
		})
	}
}

// writeCase is one case of BenchmarkWriteWithSubscriptions: n resources
// made by sub (Subscriptions unless rt says), 100 per transaction.
type writeCase struct {
	name string
	n    int
	sub  func(k int) (*auth.Principal, []byte)
	off  bool   // stored with status off: none active
	rt   string // the type sub makes: Subscription unless set
	// thenOff: made active (handshake and all), then turned off by their
	// owners, so that the database holds what an active case's does
	thenOff bool
}

// writeCases are the cases of BenchmarkWriteWithSubscriptions, in its
// order.
func writeCases() []writeCase {
	many := 10000
	if v, err := strconv.Atoi(os.Getenv("CRS_BENCH_SUBSCRIPTIONS")); err == nil && v > 0 {
		many = v
	}
	oneProvider := func(k int) (*auth.Principal, []byte) {
		p := principal("care-provider", "VN2B3")
		p.ClientID = fmt.Sprintf("dscr-%d", k%100)
		return p, subscriptionJSON("VN2B3", "careplan-changed", "", "", nil)
	}
	return []writeCase{
		{name: "subscriptions=0"},
		{name: fmt.Sprintf("per-person=%d", many), n: many, sub: func(k int) (*auth.Principal, []byte) {
			return nil, subscriptionJSON("", "careplan-changed", "", "", nil, fmt.Sprintf("CarePlan?subject=Patient/person-%d", k))
		}},
		{name: fmt.Sprintf("one-provider=%d", many), n: many, sub: oneProvider},
		{name: fmt.Sprintf("stored-off=%d", many), n: many, sub: oneProvider, off: true},
		{name: fmt.Sprintf("was-active=%d", many), n: many, sub: oneProvider, thenOff: true},
		{name: fmt.Sprintf("groups=%d", many), n: many, rt: "Group", sub: func(k int) (*auth.Principal, []byte) {
			p, _ := oneProvider(k)
			return p, groupJSON(k)
		}},
	}
}

// setUpWriteCase makes case c's server (Alice's plan cp-alice, and c's
// resources, their subscriptions active or off, and the set-up's
// AuditEvents written) and returns it with the administrator's context the
// timed writes use.
func setUpWriteCase(b *testing.B, c writeCase) (*env, context.Context) {
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 8, MaxIdleConnsPerHost: 8}}
	e := newEnv(b, subscriptions.Config{AllowLoopback: true, Client: client})
	e.seedPlan(b)
	rcv := newOKReceiver(b)
	ctx := e.as(e.admin)
	rt := c.rt
	if rt == "" {
		rt = "Subscription"
	}
	var offs []string // for thenOff: each transaction's PUTs turning its subscriptions off
	var owners []*auth.Principal
	for i := 0; i < c.n; i += 100 { // 100 per transaction, each as its owner
		var entries []string
		var bodies [][]byte
		var owner *auth.Principal
		for k := i; k < min(c.n, i+100); k++ {
			p, body := c.sub(k)
			owner = p
			body = bytes.Replace(body, []byte(`"endpoint":""`), []byte(`"endpoint":"`+rcv.URL+`"`), 1)
			if c.off {
				body = bytes.Replace(body, []byte(`"status":"requested"`), []byte(`"status":"off"`), 1)
			}
			bodies = append(bodies, body)
			entries = append(entries, `{"resource":`+string(body)+`,"request":{"method":"POST","url":"`+rt+`"}}`)
		}
		tx := `{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`
		octx := ctx
		if owner != nil {
			octx = e.as(owner)
		}
		res, err := e.eng.Bundle(octx, []byte(tx), engine.SearchOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if c.thenOff {
			var puts []string
			for j, en := range res.Entry {
				parts := strings.Split(en.Response.Location, "/") // Subscription/{id}/_history/1
				body := bytes.Replace(bodies[j], []byte(`"status":"requested"`), []byte(`"status":"off","id":"`+parts[1]+`"`), 1)
				puts = append(puts, `{"resource":`+string(body)+`,"request":{"method":"PUT","url":"Subscription/`+parts[1]+`"}}`)
			}
			offs = append(offs, `{"resourceType":"Bundle","type":"transaction","entry":[`+strings.Join(puts, ",")+`]}`)
			owners = append(owners, owner)
		}
	}
	status := "active"
	if c.off {
		status = "off"
	}
	count := func(status string) func() bool {
		return func() bool {
			bundle, err := e.eng.Search(ctx, "Subscription", []fhir.RawParam{{Name: "status", Value: status}, {Name: "_summary", Value: "count"}}, engine.SearchOptions{})
			return err == nil && bundle.Total != nil && *bundle.Total == c.n
		}
	}
	if rt == "Subscription" {
		waitWithin(b, 20*time.Minute, "every subscription "+status, count(status))
	}
	if c.thenOff {
		waitWithin(b, 20*time.Minute, "the audit queue", func() bool { return e.eng.AuditQueueDepth() == 0 })
		for i, tx := range offs {
			if _, err := e.eng.Bundle(e.as(owners[i]), []byte(tx), engine.SearchOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		waitWithin(b, 20*time.Minute, "every subscription off", count("off"))
	}
	// the setup's AuditEvents (handshakes, status changes) are written first
	waitWithin(b, 20*time.Minute, "the audit queue", func() bool { return e.eng.AuditQueueDepth() == 0 })
	time.Sleep(time.Second)
	return e, ctx
}

// BenchmarkSubscriptionWriteCostInterleaved: the cases of
// BenchmarkWriteWithSubscriptions set up side by side in one process, and
// their CarePlan updates timed in turns (CRS_BENCH_ROUNDS rounds, default
// 10, of CRS_BENCH_WRITES/rounds writes per case, default 2,000 writes in
// all, each case's turn ending when its audit queue is empty, so that its
// AuditEvents are counted in its own turn), so
// that a change of the machine's load during the run weighs on every case
// alike. On a shared machine, BenchmarkWriteWithSubscriptions's cases, run
// one after the other, differ by 10-15% between runs of the same code; here
// each case's CPU per write is the median of its turns, and its ratio to
// subscriptions=0 (x-<case>) the median of the rounds' ratios, each turn
// against none's turn of the same round. Run it with -benchtime 1x (each
// iteration sets up all the servers again).
func BenchmarkSubscriptionWriteCostInterleaved(b *testing.B) {
	rounds, writes := 10, 2000
	if v, err := strconv.Atoi(os.Getenv("CRS_BENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	if v, err := strconv.Atoi(os.Getenv("CRS_BENCH_WRITES")); err == nil && v > 0 {
		writes = v
	}
	cases := writeCases()
	envs := make([]*env, len(cases))
	ctxs := make([]context.Context, len(cases))
	for i, c := range cases {
		envs[i], ctxs[i] = setUpWriteCase(b, c)
	}
	pages, depths := make([]int, len(cases)), make([]int, len(cases))
	for i := range cases {
		pages[i], depths[i] = databaseShape(b, envs[i].path)
	}
	per := max(1, writes/rounds)
	turns := make([][]float64, len(cases)) // cpu-µs per write of each turn
	written := make([]int64, len(cases))
	b.ResetTimer()
	for r := 0; r < rounds*b.N; r++ {
		for i := range cases {
			k := (i + r) % len(cases) // each case first in some round
			e, ctx := envs[k], ctxs[k]
			cpu0, w0 := cpuTime(), bytesWritten()
			// labelled, so that a -cpuprofile's samples of the writing
			// goroutine tell the cases apart (-tagfocus case=…)
			pprof.Do(ctx, pprof.Labels("case", cases[k].name), func(ctx context.Context) {
				for j := 0; j < per; j++ {
					if _, err := e.eng.Update(ctx, "CarePlan", "cp-alice", carePlan("cp-alice", "alice", "alice-ref", fmt.Sprintf("change %d.%d", r, j)), 0); err != nil {
						b.Fatal(err)
					}
				}
			})
			waitWithin(b, time.Minute, "the audit queue", func() bool { return e.eng.AuditQueueDepth() == 0 })
			turns[k] = append(turns[k], float64((cpuTime()-cpu0).Microseconds())/float64(per))
			written[k] += bytesWritten() - w0
		}
	}
	b.StopTimer()
	for i, c := range cases {
		name, _, _ := strings.Cut(c.name, "=")
		if i > 0 { // the median of the rounds' ratios: each turn against none's in the same round
			ratios := make([]float64, len(turns[i]))
			for r := range ratios {
				ratios[r] = turns[i][r] / turns[0][r]
			}
			b.ReportMetric(median(ratios), "x-"+name)
		}
	}
	for i, c := range cases { // median sorts the turns
		name, _, _ := strings.Cut(c.name, "=")
		b.ReportMetric(float64(pages[i]), "pages-"+name)
		b.ReportMetric(float64(depths[i]), "depth-"+name)
		b.ReportMetric(median(turns[i]), "cpu-µs/write-"+name)
		b.ReportMetric(float64(written[i])/1024/float64(per*rounds*b.N), "KiB/write-"+name)
	}
	b.ReportMetric(0, "ns/op")
}

// databaseShape returns the pages of the SQLite database at path (its file
// and WAL, as a reader sees them) and the depth of its deepest b-tree (the
// pages an insert into it walks), from SQLite's dbstat table.
func databaseShape(b *testing.B, path string) (pages, depth int) {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow(`PRAGMA page_count`).Scan(&pages); err != nil {
		b.Fatal(err)
	}
	// a page's path is "/" for a root and gains "xxx/" per level
	if err := db.QueryRow(`SELECT max(length(path) - length(replace(path, '/', ''))) FROM dbstat`).Scan(&depth); err != nil {
		b.Logf("no dbstat: %v", err)
	}
	rows, err := db.Query(`SELECT name, count(*), max(length(path) - length(replace(path, '/', ''))) FROM dbstat GROUP BY name ORDER BY count(*) DESC LIMIT 8`)
	if err == nil {
		defer rows.Close()
		var tables []string
		for rows.Next() {
			var name string
			var n, d int
			if rows.Scan(&name, &n, &d) == nil {
				tables = append(tables, fmt.Sprintf("%s %d pages depth %d", name, n, d))
			}
		}
		b.Logf("%s: %s", path, strings.Join(tables, ", "))
	}
	var kinds []string
	if rows, err := db.Query(`SELECT type, count(*) FROM versions GROUP BY type ORDER BY count(*) DESC LIMIT 8`); err == nil {
		defer rows.Close()
		for rows.Next() {
			var typ string
			var n int
			if rows.Scan(&typ, &n) == nil {
				kinds = append(kinds, fmt.Sprintf("%s %d", typ, n))
			}
		}
		b.Logf("versions: %s", strings.Join(kinds, ", "))
	}
	return pages, depth
}

// median is the median of xs (which it sorts).
func median(xs []float64) float64 {
	sort.Float64s(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// bytesWritten is what the process has passed to write system calls so far
// (/proc/self/io wchar: SQLite's WAL frames and checkpoints, the journal),
// 0 where that file is missing.
func bytesWritten() int64 {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// groupJSON is the control's resource k: a Group of care provider VN2B3 of
// about the size of a subscriptionJSON with an owner (about 500 bytes).
func groupJSON(k int) []byte {
	b, _ := json.Marshal(map[string]any{
		"resourceType":   "Group",
		"type":           "person",
		"actual":         false,
		"name":           fmt.Sprintf("DSCR caseload %d of care provider VN2B3, for the control of stored-off", k),
		"managingEntity": map[string]any{"reference": "Organization/agency2"},
		"identifier":     []any{map[string]any{"system": "https://dscr.example/caseload", "value": fmt.Sprintf("caseload-%d", k)}},
		"characteristic": []any{map[string]any{
			"code":                 map[string]any{"text": "the DSCR hears about plan changes"},
			"valueCodeableConcept": map[string]any{"text": "careplan-changed"},
			"exclude":              false,
		}},
	})
	return b
}

// BenchmarkNotificationLatency: one healthy rest-hook receiver subscribed
// to careplan-changed while writers update plans as fast as they can (or at
// CRS_BENCH_RATE writes/s): the time from a write's lastUpdated to the
// notification's arrival, p50 and p95, and the write rate achieved.
func BenchmarkNotificationLatency(b *testing.B) {
	e := newEnv(b, subscriptions.Config{AllowLoopback: true})
	e.seedPlan(b)
	rcv := newOKReceiver(b)
	ctx := e.as(e.admin)
	id := e.subscribe(b, e.admin, subscriptionJSON("", "careplan-changed", rcv.URL, "", nil))
	waitFor(b, "active", func() bool { s, _ := e.status(b, e.admin, id); return s == "active" })
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	var next atomic.Int64
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if _, err := e.eng.Update(ctx, "CarePlan", "cp-alice", carePlan("cp-alice", "alice", "alice-ref", fmt.Sprintf("change %d", i)), 0); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	waitFor(b, "every event", func() bool {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		return len(rcv.latencies) >= b.N
	})
	b.StopTimer()
	rcv.mu.Lock()
	lat := append([]time.Duration(nil), rcv.latencies...)
	rcv.mu.Unlock()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "writes/s")
	b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*95/100].Milliseconds()), "p95-ms")
}

// BenchmarkNotificationAtRate: the delivery target. Writers update
// CarePlans (strict profiles, access policy, audit, SQLite without fsync)
// at CRS_BENCH_RATE writes/s in all (default 1,000) for CRS_BENCH_SECONDS
// (default 10) while one healthy rest-hook receiver on 127.0.0.1 is
// subscribed to careplan-changed: every write is an event of it. It reports
// the write rate achieved and the time from each write's lastUpdated to the
// arrival of its notification, p50, p95 and p99. Run it with -benchtime 1x:
// each iteration is one run of that length.
func BenchmarkNotificationAtRate(b *testing.B) {
	rate, seconds, writers := 1000, 10, 16
	if v, err := strconv.Atoi(os.Getenv("CRS_BENCH_RATE")); err == nil && v > 0 {
		rate = v
	}
	if v, err := strconv.Atoi(os.Getenv("CRS_BENCH_SECONDS")); err == nil && v > 0 {
		seconds = v
	}
	e := newEnv(b, subscriptions.Config{AllowLoopback: true})
	ctx := e.as(e.admin)
	for w := 0; w < writers; w++ {
		id := fmt.Sprintf("cp-w%d", w)
		if _, err := e.eng.Update(ctx, "CarePlan", id, carePlan(id, "alice", "alice-ref", "first draft"), 0); err != nil {
			b.Fatal(err)
		}
	}
	rcv := newOKReceiver(b)
	// a DSCR of care provider VN1A2 (Alice's): its access policy is part of
	// every match
	id := e.subscribe(b, e.provider, subscriptionJSON("VN1A2", "careplan-changed", rcv.URL, "", nil))
	waitFor(b, "active", func() bool { s, _ := e.status(b, e.provider, id); return s == "active" })
	waitWithin(b, time.Minute, "the audit queue", func() bool { return e.eng.AuditQueueDepth() == 0 })
	b.ResetTimer()
	cpu0 := cpuTime()
	var written atomic.Int64
	var elapsed time.Duration
	for i := 0; i < b.N; i++ {
		d := time.Duration(seconds) * time.Second
		start := time.Now()
		var wg sync.WaitGroup
		var next atomic.Int64
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				id := fmt.Sprintf("cp-w%d", w)
				for {
					k := next.Add(1)
					due := start.Add(time.Duration(k) * time.Second / time.Duration(rate))
					if due.Sub(start) >= d {
						return
					}
					time.Sleep(time.Until(due)) // behind schedule: at once
					if _, err := e.eng.Update(ctx, "CarePlan", id, carePlan(id, "alice", "alice-ref", fmt.Sprintf("change %d", k)), 0); err != nil {
						b.Error(err)
						return
					}
					written.Add(1)
				}
			}(w)
		}
		wg.Wait()
		elapsed += time.Since(start)
	}
	n := int(written.Load())
	waitWithin(b, 5*time.Minute, "every event", func() bool {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		return len(rcv.latencies) >= n
	})
	b.StopTimer()
	cpu := cpuTime() - cpu0
	rcv.mu.Lock()
	lat := append([]time.Duration(nil), rcv.latencies...)
	rcv.mu.Unlock()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(float64(n)/elapsed.Seconds(), "writes/s")
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*95/100]), "p95-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
	b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/write")
	b.ReportMetric(0, "ns/op")
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// profileTimed writes a CPU profile of the timed part of a benchmark to
// $CRS_BENCH_PROFILE-<name>.prof when CRS_BENCH_PROFILE is set (a
// -cpuprofile would hold the set-up too); call what it returns to stop.
func profileTimed(b *testing.B, name string) func() {
	prefix := os.Getenv("CRS_BENCH_PROFILE")
	if prefix == "" {
		return func() {}
	}
	f, err := os.Create(prefix + "-" + strings.NewReplacer("/", "_", "=", "_").Replace(name) + ".prof")
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
