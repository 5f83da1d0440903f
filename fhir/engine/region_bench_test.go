package engine_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/search"
	"crs/fhir/store"
	"crs/fhir/store/mongo"
	"crs/fhir/store/mongo/mongotest"
	"crs/fhir/store/sqlite"
	"crs/fhir/validate"

	"go.mongodb.org/mongo-driver/v2/bson"
	mongodriver "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// A synthetic Community Recovery region: trusts, care providers, therapists and,
// per person, a referral, an episode, a care plan in three versions (each a
// reduction of calls), two goals and a run of visits: about 14 resources and 16
// versions a person. CRS_BENCH_RESOURCES sets the size (default 10000).
// CRS_BENCH_DB, when set (SQLite only), is a database path outside the
// repository where the region is kept: built there when missing or of another
// size or format, reused as it is otherwise (keptRegion).

const (
	trusts     = 3
	providers  = 20
	therapists = 50
	perPerson  = 14
)

func regionSize() int {
	if n, err := strconv.Atoi(os.Getenv("CRS_BENCH_RESOURCES")); err == nil && n > 0 {
		return n
	}
	return 10000
}

// nhsNumber makes a valid, unique test NHS number (999 prefix, Modulus 11) for
// person i < 333333: of the two candidate bases 3i and 3i+1, whose check sums
// differ, at least one has a valid check digit.
func nhsNumber(i int) string {
	for k := 0; k < 2; k++ {
		base := fmt.Sprintf("999%06d", 3*i+k)
		sum := 0
		for d := 0; d < 9; d++ {
			sum += int(base[d]-'0') * (10 - d)
		}
		check := 11 - sum%11
		if check == 11 {
			check = 0
		}
		if check != 10 {
			return base + strconv.Itoa(check)
		}
	}
	panic("unreachable: two consecutive bases cannot both be invalid")
}

type loader struct {
	st    store.Store
	reg   *search.Registry
	batch []store.Version
	index [][]fhir.IndexValue
	ctx   context.Context
	n     int
}

func (l *loader) put(t testing.TB, vid int, res string) {
	obj, err := fhir.Parse([]byte(res), fhir.DefaultLimits)
	if err != nil {
		t.Fatalf("%v: %s", err, res)
	}
	now := time.Now().UTC()
	obj["meta"] = map[string]any{"versionId": strconv.Itoa(vid), "lastUpdated": now.Format("2006-01-02T15:04:05.000Z07:00")}
	idx, err := l.reg.Extract(fhir.ResourceType(obj), obj)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := fhir.Marshal(obj)
	method := "PUT"
	if vid == 1 {
		method = "POST"
		l.n++
	}
	l.batch = append(l.batch, store.Version{Type: fhir.ResourceType(obj), ID: fhir.ID(obj), VersionID: vid, LastUpdated: now, Method: method, Body: body})
	l.index = append(l.index, idx)
	if len(l.batch) >= 500 {
		l.flush(t)
	}
}

func (l *loader) flush(t testing.TB) {
	if len(l.batch) == 0 {
		return
	}
	err := l.st.Write(l.ctx, func(tx store.Tx) error {
		for i, v := range l.batch {
			if err := tx.Put(l.ctx, v, l.index[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	l.batch, l.index = l.batch[:0], l.index[:0]
}

// region is a loaded synthetic region and what the queries need of it.
type region struct {
	eng     *engine.Engine
	people  int
	st      store.Store
	dir     string
	uri     string // the MongoDB-wire server's URI, "" for SQLite
	loadDur time.Duration
}

var families = []string{"Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel", "Wright", "Khan", "Evans"}
var localities = []string{"North Warwickshire", "South Warwickshire", "Rugby"}

func loadRegion(b *testing.B, resources int) *region {
	dir := b.TempDir()
	var st store.Store
	var err error
	uri := benchMongoURI(b)
	dbPath, reuse := filepath.Join(dir, "region.db"), false
	if uri == "" {
		if p := os.Getenv("CRS_BENCH_DB"); p != "" {
			dbPath, reuse = p, keptRegion(b, p, resources)
		}
	}
	if uri != "" {
		st, err = mongo.Open(context.Background(), uri, slog.New(slog.NewTextHandler(io.Discard, nil)))
	} else {
		opened := time.Now()
		st, err = sqlite.Open(dbPath, sqlite.Options{})
		if reuse {
			// Opening builds any denormalised key the database lacks.
			b.Logf("region: opened %s in %v", dbPath, time.Since(opened))
		}
	}
	if err != nil {
		b.Fatal(err)
	}
	v, err := validate.New()
	if err != nil {
		b.Fatal(err)
	}
	if reuse {
		b.Logf("region: reusing %s (%s)", dbPath, strings.TrimSpace(regionStamp(resources)))
		eng := engine.New(engine.Config{Store: st, Validator: v, Elements: v, Base: "http://bench/fhir", ExplainPlans: true})
		return &region{eng: eng, people: resources / perPerson, st: st, dir: dir}
	}
	l := &loader{st: st, reg: search.Default(), ctx: context.Background()}
	start := time.Now()
	for i := 0; i < trusts; i++ {
		l.put(b, 1, fmt.Sprintf(`{"resourceType":"Organization","id":"trust%d","name":"Acute Trust %d","identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"RT%d"}]}`, i, i, i))
	}
	for i := 0; i < providers; i++ {
		l.put(b, 1, fmt.Sprintf(`{"resourceType":"Organization","id":"prov%d","name":"Home Care %d","identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"P%d"}]}`, i, i, i))
	}
	for i := 0; i < therapists; i++ {
		l.put(b, 1, fmt.Sprintf(`{"resourceType":"Practitioner","id":"ot%d","name":[{"family":"Therapist%d"}],"identifier":[{"system":"https://fhir.hl7.org.uk/Id/hcpc-number","value":"OT%05d"}]}`, i, i, i))
	}
	rnd := rand.New(rand.NewSource(1))
	people := resources / perPerson
	day := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	for p := 0; p < people; p++ {
		prov, trust := p%providers, p%trusts
		start := day.Add(time.Duration(p%180) * 24 * time.Hour)
		d := func(days int) string { return start.AddDate(0, 0, days).Format("2006-01-02") }
		dt := func(days, hour int) string {
			return start.AddDate(0, 0, days).Add(time.Duration(hour) * time.Hour).Format(time.RFC3339)
		}
		status := "active"
		if p%3 == 0 {
			status = "completed"
		}
		pid := fmt.Sprintf("pat%d", p)
		l.put(b, 1, fmt.Sprintf(`{"resourceType":"Patient","id":"%s","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"%s"}],"name":[{"family":"%s","given":["Person%d"]}],"birthDate":"%d-%02d-%02d","gender":"%s","managingOrganization":{"reference":"Organization/prov%d"},"address":[{"district":"%s","postalCode":"CV%d 1AA"}]}`,
			pid, nhsNumber(p), families[p%len(families)], p, 1930+p%60, 1+p%12, 1+p%28, []string{"male", "female"}[p%2], prov, localities[p%3], p%40))
		srStatus := "completed"
		if status == "active" && p%5 == 0 {
			srStatus = "active" // awaiting a start
		}
		l.put(b, 1, fmt.Sprintf(`{"resourceType":"ServiceRequest","id":"sr%d","status":"%s","intent":"plan","category":[{"coding":[{"system":"http://snomed.info/sct","code":"892601000000108"}]}],"subject":{"reference":"Patient/%s"},"requester":{"reference":"Organization/trust%d"},"performer":[{"reference":"Organization/prov%d"}],"authoredOn":"%s"}`,
			p, srStatus, pid, trust, prov, dt(-1, 9)))
		epStatus := "finished"
		if status == "active" {
			epStatus = "active"
		}
		l.put(b, 1, fmt.Sprintf(`{"resourceType":"EpisodeOfCare","id":"ep%d","status":"%s","patient":{"reference":"Patient/%s"},"managingOrganization":{"reference":"Organization/prov%d"},"referralRequest":[{"reference":"ServiceRequest/sr%d"}],"period":{"start":"%s"}}`,
			p, epStatus, pid, prov, p, d(0)))
		for g := 0; g < 2; g++ {
			l.put(b, 1, fmt.Sprintf(`{"resourceType":"Goal","id":"g%d-%d","lifecycleStatus":"%s","description":{"text":"I want to make my own cup of tea %d"},"subject":{"reference":"Patient/%s"},"expressedBy":{"reference":"Patient/%s"},"target":[{"dueDate":"%s"}]}`,
				p, g, status, g, pid, pid, d(28)))
		}
		visits := perPerson - 7
		for e := 0; e < visits; e++ {
			l.put(b, 1, fmt.Sprintf(`{"resourceType":"Encounter","id":"e%d-%d","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"HH"},"subject":{"reference":"Patient/%s"},"episodeOfCare":[{"reference":"EpisodeOfCare/ep%d"}],"basedOn":[{"reference":"ServiceRequest/sr%d"}],"participant":[{"individual":{"reference":"Practitioner/ot%d"}}],"period":{"start":"%s","end":"%s"}}`,
				p, e, pid, p, p, rnd.Intn(therapists), dt(e*4, 9), dt(e*4, 10)))
		}
		cp := func(vid, calls int, st string) string {
			return fmt.Sprintf(`{"resourceType":"CarePlan","id":"cp%d","status":"%s","intent":"plan","subject":{"reference":"Patient/%s"},"basedOn":[{"reference":"ServiceRequest/sr%d"}],"encounter":{"reference":"Encounter/e%d-0"},"author":{"reference":"Organization/prov%d"},"period":{"start":"%s","end":"%s"},"goal":[{"reference":"Goal/g%d-0"},{"reference":"Goal/g%d-1"}],"description":"%d calls a day"}`,
				p, st, pid, p, p, prov, d(0), d(42), p, p, calls)
		}
		l.put(b, 1, cp(1, 4, "active"))
		l.put(b, 2, cp(2, 3, "active"))
		l.put(b, 3, cp(3, 2, status))
	}
	l.flush(b)
	loadDur := time.Since(start)
	if os.Getenv("CRS_BENCH_DB") != "" && uri == "" {
		if err := os.WriteFile(dbPath+".region", []byte(regionStamp(resources)), 0o644); err != nil {
			b.Fatal(err)
		}
		b.Logf("region: built %s for reuse", dbPath)
	}
	eng := engine.New(engine.Config{Store: st, Validator: v, Elements: v, Base: "http://bench/fhir", ExplainPlans: true})
	return &region{eng: eng, people: people, st: st, dir: dir, uri: uri, loadDur: loadDur}
}

// regionFormat names what loadRegion writes; bump it whenever the region's
// content or the store's index rows change, so that a kept region database
// (CRS_BENCH_DB) built by older code is rebuilt rather than measured.
const regionFormat = 1

// regionStamp is what the stamp file beside a kept region database says: the
// loader's format, the size and the random seed of the visits.
func regionStamp(resources int) string {
	return fmt.Sprintf("crs bench region format=%d resources=%d seed=1\n", regionFormat, resources)
}

// keptRegion reports whether the SQLite database at path (CRS_BENCH_DB) holds a
// complete region of this size and format, as its stamp file (path.region,
// written only after the last batch committed) says. When it does not, it
// removes the database, its WAL and the stamp, so loadRegion builds it afresh
// at path. The benchmarks only read the region (no audit), so a kept region
// stays as built.
func keptRegion(b *testing.B, path string, resources int) bool {
	stamp, err := os.ReadFile(path + ".region")
	if err == nil && string(stamp) == regionStamp(resources) {
		if _, err := os.Stat(path); err == nil {
			return true
		}
	}
	for _, f := range []string{path + ".region", path, path + "-wal", path + "-shm"} {
		if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
			b.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.Fatal(err)
	}
	return false
}

// benchMongoURI picks the store of the region from CRS_BENCH_STORE: "ferretdb"
// is the MongoDB backend on the in-process FerretDB (a correctness fixture: its
// SQLite handler scans collections, so its figures say nothing about MongoDB);
// "mongodb" is the server at CRS_TEST_MONGODB_URI; anything else is SQLite ("").
func benchMongoURI(b *testing.B) string {
	switch os.Getenv("CRS_BENCH_STORE") {
	case "ferretdb":
		return mongotest.URI(b)
	case "mongodb":
		base := os.Getenv("CRS_TEST_MONGODB_URI")
		if base == "" {
			b.Fatal("CRS_BENCH_STORE=mongodb needs CRS_TEST_MONGODB_URI")
		}
		return mongotest.Fresh(base)
	}
	return ""
}

// benchRuns is how many latency samples each query takes (CRS_BENCH_RUNS,
// default 200).
func benchRuns() int {
	if n, err := strconv.Atoi(os.Getenv("CRS_BENCH_RUNS")); err == nil && n > 0 {
		return n
	}
	return 200
}

// scannedObjects reads the server's count of documents examined by queries
// (serverStatus metrics.queryExecutor.scannedObjects); ok is false when the
// server does not report it, as FerretDB does not.
func scannedObjects(ctx context.Context, c *mongodriver.Client) (n int64, ok bool) {
	var status bson.M
	if err := c.Database("admin").RunCommand(ctx, bson.D{{Key: "serverStatus", Value: 1}}).Decode(&status); err != nil {
		return 0, false
	}
	metrics, _ := status["metrics"].(bson.M)
	qe, _ := metrics["queryExecutor"].(bson.M)
	switch v := qe["scannedObjects"].(type) {
	case int64:
		return v, true
	case int32:
		return int64(v), true
	case float64:
		return int64(v), true
	}
	return 0, false
}

// pathwayQuery is one typical query of the pathway, made concrete for person p.
type pathwayQuery struct {
	name string
	run  func(ctx context.Context, e *engine.Engine, p int) error
	// rt and qs are the search a query makes, when it is one.
	rt, qs string
}

// pathwaySearch is the pathway query that searches rt with the query string qs.
func pathwaySearch(name, rt, qs string) pathwayQuery {
	return pathwayQuery{name: name, run: searchQ(rt, qs), rt: rt, qs: qs}
}

// uncountedQueries are the paged pathway searches asked again with
// _total=none. Their first page stops early, but without _total the store
// counts Bundle.total up to the total limit (500): at 10k every such set is
// below it, at 1M many reach it. Beside the counted figures they show what
// the plan costs and what the count adds.
func uncountedQueries() []pathwayQuery {
	var out []pathwayQuery
	for _, q := range pathwayQueries {
		if strings.Contains(q.qs, "_count=") {
			out = append(out, pathwaySearch(q.name+"-without-total", q.rt, q.qs+"&_total=none"))
		}
	}
	return out
}

func searchQ(rt, qs string) func(ctx context.Context, e *engine.Engine, p int) error {
	return func(ctx context.Context, e *engine.Engine, p int) error {
		q := strings.NewReplacer("{p}", strconv.Itoa(p), "{prov}", strconv.Itoa(p%providers), "{nhs}", nhsNumber(p), "{family}", families[p%len(families)]).Replace(qs)
		params, err := engine.ParseQueryString(q)
		if err != nil {
			return err
		}
		bundle, err := e.Search(ctx, rt, params, engine.SearchOptions{})
		if err == nil {
			lastPlan = bundle.Plan
		}
		return err
	}
}

// lastPlan is the store's plan of the last search a pathway query made
// (BenchmarkPathwayQueries logs it with each query's figures).
var lastPlan string

var pathwayQueries = []pathwayQuery{
	pathwaySearch("provider-active-careplans+goals", "CarePlan", "status=active&subject:Patient.organization=Organization/prov{prov}&_include=CarePlan:goal&_count=20"),
	pathwaySearch("referrals-awaiting-start", "ServiceRequest", "status=active&performer=Organization/prov{prov}&_sort=-authored&_count=20"),
	{name: "episode-everything", run: func(ctx context.Context, e *engine.Engine, p int) error {
		_, err := e.Everything(ctx, "EpisodeOfCare", "ep"+strconv.Itoa(p), nil)
		return err
	}},
	{name: "careplan-history", run: func(ctx context.Context, e *engine.Engine, p int) error {
		_, err := e.History(ctx, "CarePlan", "cp"+strconv.Itoa(p), nil)
		return err
	}},
	pathwaySearch("chained-nhs-number-referrals", "ServiceRequest", "subject.identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}"),
	pathwaySearch("patient-by-nhs-number", "Patient", "identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}"),
	pathwaySearch("episode-visits-by-date", "Encounter", "episode-of-care=EpisodeOfCare/ep{p}&_sort=-date"),
	pathwaySearch("patient-active-goals", "Goal", "subject=Patient/pat{p}&lifecycle-status=active"),
	pathwaySearch("provider-active-episodes", "EpisodeOfCare", "organization=Organization/prov{prov}&status=active&_count=20"),
	pathwaySearch("name-and-birthdate", "Patient", "family={family}&birthdate=ge1950&_count=20"),
	pathwaySearch("people-with-active-goals", "Patient", "_has:Goal:subject:lifecycle-status=active&organization=Organization/prov{prov}&_count=20"),
	{name: "read-referral", run: func(ctx context.Context, e *engine.Engine, p int) error {
		_, err := e.Read(ctx, "ServiceRequest", "sr"+strconv.Itoa(p))
		return err
	}},
}

// BenchmarkPathwayQueries loads a region of CRS_BENCH_RESOURCES resources and
// reports the p50 and p95 latency of each typical query (200 runs each, each on
// a different person), plus the load rate.
func BenchmarkPathwayQueries(b *testing.B) {
	n := regionSize()
	r := loadRegion(b, n)
	defer r.st.Close()
	b.Logf("region: %d people, about %d resources, loaded in %s", r.people, r.people*perPerson, r.loadDur.Round(time.Millisecond))
	ctx := context.Background()
	var client *mongodriver.Client
	if r.uri != "" {
		c, err := mongodriver.Connect(options.Client().ApplyURI(r.uri))
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = c.Disconnect(ctx) }()
		client = c
		if _, ok := scannedObjects(ctx, client); !ok {
			b.Log("documents scanned per query: not reported by this server (FerretDB does not report serverStatus metrics.queryExecutor)")
		}
	}
	defer func() {
		fmt.Fprintf(os.Stderr, "region of %d resources, memory after the queries: %s\n", n, procMemory())
	}()
	for _, q := range append(pathwayQueries[:len(pathwayQueries):len(pathwayQueries)], uncountedQueries()...) {
		b.Run(q.name, func(b *testing.B) {
			rnd := rand.New(rand.NewSource(2))
			runs := benchRuns()
			lat := make([]time.Duration, 0, runs)
			var scanned0 int64
			var scanning bool
			if client != nil {
				scanned0, scanning = scannedObjects(ctx, client)
			}
			counter, counting := r.st.(interface{ DocsReturned() int64 })
			var returned0 int64
			if counting {
				returned0 = counter.DocsReturned()
			}
			cpu0 := engine.CPUTime(b)
			for i := 0; i < runs; i++ {
				p := rnd.Intn(r.people)
				t0 := time.Now()
				if err := q.run(ctx, r.eng, p); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			// The process's CPU per query (the steadier figure on a loaded
			// machine; it includes the store's background work, if any).
			cpuPerQuery := float64((engine.CPUTime(b) - cpu0).Microseconds()) / 1000 / float64(runs)
			// Reported after the timed loop: ResetTimer drops reported metrics.
			scanned, returned := -1.0, -1.0
			if scanning {
				if n, ok := scannedObjects(ctx, client); ok {
					scanned = float64(n-scanned0) / float64(runs)
				}
			}
			if counting {
				returned = float64(counter.DocsReturned()-returned0) / float64(runs)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := q.run(ctx, r.eng, rnd.Intn(r.people)); err != nil {
					b.Fatal(err)
				}
			}
			if lastPlan != "" {
				b.Logf("plan of the last run: %s", lastPlan)
				lastPlan = ""
			}
			b.ReportMetric(cpuPerQuery, "cpu-ms/query")
			if scanned >= 0 {
				b.ReportMetric(scanned, "docs-scanned/query")
			}
			if returned >= 0 {
				b.ReportMetric(returned, "docs-returned/query")
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*95/100].Microseconds())/1000, "p95-ms")
		})
	}
}

// BenchmarkAcuteReferralTransaction posts transaction Bundles of the acute
// referral shape (Patient with a conditional create on the NHS number,
// Encounter, ServiceRequest) from 8 goroutines, durable.
func BenchmarkAcuteReferralTransaction(b *testing.B) {
	st, err := sqlite.Open(filepath.Join(b.TempDir(), "tx.db"), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	v, _ := validate.New()
	eng := engine.New(engine.Config{Store: st, Validator: v, Base: "http://bench/fhir"})
	var n atomic.Int64
	ctx := context.Background()
	var once sync.Once
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(n.Add(1))
			nhs := nhsNumber(i)
			body := `{"resourceType":"Bundle","type":"transaction","entry":[
 {"fullUrl":"urn:uuid:11111111-1111-4111-8111-111111111111","resource":{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"` + nhs + `"}],"name":[{"family":"Acute"}]},
  "request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=https://fhir.nhs.uk/Id/nhs-number|` + nhs + `"}},
 {"fullUrl":"urn:uuid:22222222-2222-4222-8222-222222222222","resource":{"resourceType":"Encounter","status":"finished","class":{"code":"IMP"},"subject":{"reference":"urn:uuid:11111111-1111-4111-8111-111111111111"}},"request":{"method":"POST","url":"Encounter"}},
 {"resource":{"resourceType":"ServiceRequest","status":"active","intent":"plan","subject":{"reference":"urn:uuid:11111111-1111-4111-8111-111111111111"},"encounter":{"reference":"urn:uuid:22222222-2222-4222-8222-222222222222"},"authoredOn":"2026-11-20T10:00:00Z"},"request":{"method":"POST","url":"ServiceRequest"}}]}`
			if _, err := eng.Bundle(ctx, []byte(body), engine.SearchOptions{Minimal: true}); err != nil {
				once.Do(func() { b.Error(err) })
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "transactions/s")
}

// procMemory is this process's resident set now and at its peak (VmRSS and
// VmHWM of /proc/self/status) and now split into anonymous memory (the Go heap,
// SQLite's caches) and file pages (RssFile: the database pages SQLite reads
// through its memory map, which the kernel may drop), or "" where there is no
// such file.
func procMemory() string {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return ""
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") || strings.HasPrefix(line, "VmHWM:") || strings.HasPrefix(line, "RssAnon:") || strings.HasPrefix(line, "RssFile:") {
			out = append(out, strings.Join(strings.Fields(line), " "))
		}
	}
	return strings.Join(out, ", ")
}
