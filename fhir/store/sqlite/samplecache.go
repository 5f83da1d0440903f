package sqlite

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"crs/fhir"
)

// Planner statistics that are not recounted on every query. The planner
// ranks a query's parameters by counting their index rows up to a limit
// (query.go, count): a person's or a provider's lookup is a few rows and
// cheap to count, but "CarePlan?status=active" at a million resources is
// counted to 20,000 rows (the second sample) by every query that asks it,
// and the count is the same from one query to the next. The samples only
// choose the plan, never the answer (every plan reads the matches itself),
// so a large count may be a little stale: the store keeps the counts of
// cacheFrom rows or more in a bounded cache (sampleCache), keyed by the
// lookup's SQL and arguments (the condition's normalised form), and reuses
// one until its type has seen enough writes to change it materially (a
// tenth of the count: the writer bumps a per-type counter at each commit),
// or until it is maxSampleAge old (a write by another process, which the
// counter does not see). A count under cacheFrom is never cached: the small
// sets are counted exactly every time, as the plan's shortcuts that trust an
// exact count (emptyDriver's empty driver, the intersection's known sizes)
// need. The denormalised keys' rows (keys.go) change with writes to other
// types than their carrier's, so their lookups are never cached either.

const (
	// cacheFrom is the least count the cache keeps: the first sample's
	// limit, so that a count that a sample could find exactly is counted.
	cacheFrom = sampleLimit
	// maxSamples bounds the cache's entries.
	maxSamples = 1024
	// driftShare: an entry of count n serves until its type has seen n /
	// driftShare writes since it was counted.
	driftShare = 10
	// maxSampleAge bounds an entry's age whatever the writes seen.
	maxSampleAge = time.Minute
)

// sampleCache holds large sampled counts for the read pool's planners.
type sampleCache struct {
	mu      sync.Mutex
	entries map[string]sampleEntry
	writes  map[string]int64 // committed writes per type, since the store opened
	skip    map[*fhir.SearchParam]bool
	now     func() time.Time // tests move the clock
}

// sampleEntry is one cached count: n rows counted up to limit (n == limit
// means limit or more), when the type had seen writes writes, at at.
type sampleEntry struct {
	typ      string
	n, limit int
	writes   int64
	at       time.Time
}

// newSampleCache returns an empty cache that never caches the lookups of
// keys' parameters.
func newSampleCache(keys keySet) *sampleCache {
	c := &sampleCache{entries: map[string]sampleEntry{}, writes: map[string]int64{}, skip: map[*fhir.SearchParam]bool{}, now: time.Now}
	for _, k := range keys {
		if k.def != nil {
			c.skip[k.def] = true
		}
	}
	return c
}

// sampleKey is the cache key of a count: the lookup's SQL and arguments.
func sampleKey(b *builder) string {
	var s strings.Builder
	s.WriteString(b.sql.String())
	for _, a := range b.args {
		fmt.Fprintf(&s, "\x00%T:%v", a, a)
	}
	return s.String()
}

// get returns the cached count of key up to limit, and false when there is
// none that serves (missing, stale, or counted to a smaller limit than
// limit and found at that limit). It also returns the type's write counter,
// which put needs: read before the count, so that a write committed while
// counting makes the entry older, never younger.
func (c *sampleCache) get(typ, key string, limit int) (int, int64, bool) {
	if c == nil {
		return 0, 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.writes[typ]
	e, ok := c.entries[key]
	if !ok {
		return 0, w, false
	}
	if w-e.writes > int64(e.n/driftShare) || c.now().Sub(e.at) > maxSampleAge {
		delete(c.entries, key)
		return 0, w, false
	}
	switch {
	case e.n < e.limit: // counted exactly
		return min(e.n, limit), w, true
	case limit <= e.limit: // limit or more
		return limit, w, true
	}
	return 0, w, false
}

// put keeps the count n of key up to limit, made when the type's counter
// was writes, when it is large enough to cache.
func (c *sampleCache) put(typ, key string, limit, n int, writes int64) {
	if c == nil || n < cacheFrom {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; !ok && len(c.entries) >= maxSamples {
		c.evictOldest()
	}
	c.entries[key] = sampleEntry{typ: typ, n: n, limit: limit, writes: writes, at: c.now()}
}

// evictOldest drops the entry counted longest ago (c.mu held).
func (c *sampleCache) evictOldest() {
	var oldest string
	var at time.Time
	for k, e := range c.entries {
		if oldest == "" || e.at.Before(at) {
			oldest, at = k, e.at
		}
	}
	delete(c.entries, oldest)
}

// wrote counts a committed transaction's writes by type.
func (c *sampleCache) wrote(writes map[string]int) {
	if c == nil || len(writes) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for typ, n := range writes {
		c.writes[typ] += int64(n)
	}
}

// cacheable reports whether p's counts may be cached.
func (c *sampleCache) cacheable(p fhir.Param) bool {
	return c != nil && !c.skip[p.Def]
}

// touch counts n writes of typ in the transaction, for the sample cache.
func (t *txn) touch(typ string, n int) {
	if t.wrote == nil {
		t.wrote = map[string]int{}
	}
	t.wrote[typ] += n
}
