package measures

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"

	"crs/fhir"
)

// deadline is a clock a rule compares a referral's first visit with: the
// first visit counts if it starts no later than from(r) + within. A rule that
// reads FirstVisit only this way (and, while the clock still runs, whether
// there is a first visit at all) needs only the visits that start by the
// deadline, not every visit of the episode.
type deadline struct {
	from   func(r *Referral) time.Time
	within time.Duration
}

// by returns the latest of the deadlines ds for r, and false when none
// applies (every clock's start is unknown, so no rule places r in a period).
func by(ds []deadline, r *Referral) (time.Time, bool) {
	var last time.Time
	ok := false
	for _, d := range ds {
		if from := d.from(r); !from.IsZero() {
			if t := from.Add(d.within); !ok || t.After(last) {
				last, ok = t, true
			}
		}
	}
	return last, ok
}

// visitChunk is the episodes of one search for home visits, with the date
// the visits must start before ("" for all of them).
type visitChunk struct {
	episodes []string // "EpisodeOfCare/<id>"
	before   string   // a FHIR dateTime for date=lt
}

// firstVisitChunks groups the episodes of the referrals by when their first
// visit stops mattering. A referral whose deadlines have all passed (now is
// after the latest) needs only the visits that start by its latest deadline:
// the earliest of them is its first visit if that is in time, and if there is
// none its first visit is late (or missing), which every rule reading
// deadlines treats alike once the clock has run out. A referral whose clock
// still runs needs every visit (a first visit after the deadline still
// places it in the denominator). Chunks hold at most n episodes sorted by
// deadline, so each chunk's bound (its latest deadline, rounded up to the
// next second) reads few visits beyond its episodes' own.
func firstVisitChunks(rs []*Referral, ds []deadline, now time.Time, n int) []visitChunk {
	type due struct {
		episode string
		at      time.Time
	}
	var bounded []due
	var open []string
	for _, r := range rs {
		if r.Episode == "" {
			continue
		}
		at, ok := by(ds, r)
		switch {
		case !ok:
		case now.After(at):
			bounded = append(bounded, due{"EpisodeOfCare/" + r.Episode, at})
		default:
			open = append(open, "EpisodeOfCare/"+r.Episode)
		}
	}
	sort.Slice(bounded, func(i, j int) bool { return bounded[i].at.Before(bounded[j].at) })
	var out []visitChunk
	for i := 0; i < len(bounded); i += n {
		part := bounded[i:min(i+n, len(bounded))]
		c := visitChunk{}
		for _, d := range part {
			c.episodes = append(c.episodes, d.episode)
		}
		// lt compares the visit's start with the bound's start: the bound is
		// the next whole second after the latest deadline, so every visit
		// that starts by a deadline of the chunk is found.
		c.before = part[len(part)-1].at.UTC().Truncate(time.Second).Add(time.Second).Format(time.RFC3339)
		out = append(out, c)
	}
	for i := 0; i < len(open); i += n {
		out = append(out, visitChunk{episodes: open[i:min(i+n, len(open))]})
	}
	return out
}

// visitJobs returns one search job per chunk for the home visits of its
// episodes (the parameters base ANDed with the chunk's episodes and bound),
// calling fn with each visit; the jobs may run in parallel, so fn must be
// safe for that (serial).
func visitJobs(ctx context.Context, s Searcher, base []fhir.RawParam, chunks []visitChunk, fn func(*xEncounter)) []func() error {
	jobs := make([]func() error, 0, len(chunks))
	for _, c := range chunks {
		params := append([]fhir.RawParam{}, base...)
		params = append(params, fhir.RawParam{Name: "episode-of-care", Value: strings.Join(c.episodes, ",")})
		if c.before != "" {
			params = append(params, fhir.RawParam{Name: "date", Value: "lt" + c.before})
		}
		jobs = append(jobs, func() error { return searchInto(ctx, s, "Encounter", params, fn) })
	}
	return jobs
}

// parallelN runs jobs on at most n goroutines and returns the first error
// (the jobs not yet started when one fails are skipped).
func parallelN(n int, jobs []func() error) error {
	if n < 1 {
		n = 1
	}
	next := make(chan func() error)
	errs := make([]error, n)
	var failed sync.Once
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for job := range next {
				if err := job(); err != nil {
					errs[w] = err
					failed.Do(func() { close(stop) })
					return
				}
			}
		}()
	}
feed:
	for _, job := range jobs {
		select {
		case next <- job:
		case <-stop:
			break feed
		}
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
