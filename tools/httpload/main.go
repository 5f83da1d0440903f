// Command httpload measures crs over HTTP: durable creates and reads by id at a
// fixed concurrency, several timed runs, reporting each run and the median. It is
// what `make bench` uses; it only ever talks to the address it is given (loopback
// in the bench script), and every run is bounded in time.
//
//	httpload -base http://127.0.0.1:18080/fhir -mode create -c 8 -d 5s -runs 5 -body ServiceRequest.json
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	base := flag.String("base", "http://127.0.0.1:18080/fhir", "FHIR base URL")
	mode := flag.String("mode", "create", "create, read, or transaction (acute referral: Patient + Encounter + ServiceRequest; -body is not used)")
	conc := flag.Int("c", 8, "concurrent clients")
	dur := flag.Duration("d", 5*time.Second, "duration of one run")
	runs := flag.Int("runs", 5, "number of runs")
	bodyFile := flag.String("body", "", "resource JSON to create (create mode) or preload (read mode)")
	preload := flag.Int("preload", 2000, "resources created before a read run")
	flag.Parse()
	rt := "Bundle"
	var body []byte
	if *mode != "transaction" {
		var err error
		if body, err = os.ReadFile(*bodyFile); err != nil {
			fail(err)
		}
		var res map[string]any
		if err := json.Unmarshal(body, &res); err != nil {
			fail(err)
		}
		rt, _ = res["resourceType"].(string)
		delete(res, "id")
		body, _ = json.Marshal(res)
	}
	nonce := time.Now().UnixNano() % 1e6

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *conc * 2, MaxConnsPerHost: *conc * 2}, Timeout: 30 * time.Second}
	var ids []string
	if *mode == "read" {
		for i := 0; i < *preload; i++ {
			id, err := create(client, *base+"/"+rt, body)
			if err != nil {
				fail(err)
			}
			ids = append(ids, id)
		}
	}
	var rates []float64
	for r := 0; r < *runs; r++ {
		rate, p50, p99, errs := run(*conc, *dur, func(i int) error {
			switch *mode {
			case "create":
				_, err := create(client, *base+"/"+rt, body)
				return err
			case "transaction":
				return transaction(client, *base, fmt.Sprintf("9%03d%06d", r, (nonce+int64(i))%1e6))
			default:
				return read(client, *base+"/"+rt+"/"+ids[i%len(ids)])
			}
		})
		rates = append(rates, rate)
		fmt.Printf("run %d: %s %s c=%d: %.0f req/s, p50 %.2f ms, p99 %.2f ms, errors %d\n", r+1, *mode, rt, *conc, rate, p50, p99, errs)
	}
	sort.Float64s(rates)
	fmt.Printf("median %s %s c=%d over %d runs: %.0f req/s\n", *mode, rt, *conc, *runs, rates[len(rates)/2])
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "httpload:", err)
	os.Exit(1)
}

func create(c *http.Client, url string, body []byte) (string, error) {
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Prefer", "return=minimal")
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("create: status %d", resp.StatusCode)
	}
	loc := resp.Header.Get("Location")
	// .../Type/id/_history/1
	var id string
	parts := bytes.Split([]byte(loc), []byte("/"))
	if len(parts) >= 3 {
		id = string(parts[len(parts)-3])
	}
	return id, nil
}

// transaction posts an acute trust's discharge referral: a conditional create
// of the Patient by NHS number, its Encounter and the ServiceRequest, linked by
// urn:uuid references, as one transaction.
func transaction(c *http.Client, base, nhs string) error {
	body := `{"resourceType":"Bundle","type":"transaction","entry":[
 {"fullUrl":"urn:uuid:11111111-1111-4111-8111-111111111111","resource":{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"` + nhs + `"}],"name":[{"family":"Acute"}]},
  "request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=https://fhir.nhs.uk/Id/nhs-number|` + nhs + `"}},
 {"fullUrl":"urn:uuid:22222222-2222-4222-8222-222222222222","resource":{"resourceType":"Encounter","status":"finished","class":{"code":"IMP"},"subject":{"reference":"urn:uuid:11111111-1111-4111-8111-111111111111"}},"request":{"method":"POST","url":"Encounter"}},
 {"resource":{"resourceType":"ServiceRequest","status":"active","intent":"plan","subject":{"reference":"urn:uuid:11111111-1111-4111-8111-111111111111"},"encounter":{"reference":"urn:uuid:22222222-2222-4222-8222-222222222222"},"authoredOn":"2026-11-20T10:00:00Z"},"request":{"method":"POST","url":"ServiceRequest"}}]}`
	req, _ := http.NewRequest("POST", base, bytes.NewReader([]byte(body)))
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Prefer", "return=minimal")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("transaction: status %d", resp.StatusCode)
	}
	return nil
}

func read(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("read: status %d", resp.StatusCode)
	}
	return nil
}

// run calls op from conc goroutines for d and returns requests per second, the
// median and 99th percentile latency in ms, and the error count.
func run(conc int, d time.Duration, op func(i int) error) (float64, float64, float64, int64) {
	var n, errs atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for g := 0; g < conc; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			var mine []time.Duration
			for i := g; time.Now().Before(deadline); i += conc {
				t0 := time.Now()
				if err := op(i); err != nil {
					errs.Add(1)
					continue
				}
				mine = append(mine, time.Since(t0))
				n.Add(1)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}(g)
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[int(float64(len(lat)-1)*p)].Microseconds()) / 1000
	}
	return float64(n.Load()) / elapsed, pct(0.5), pct(0.99), errs.Load()
}
