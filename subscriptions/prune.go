package subscriptions

import (
	"context"
	"encoding/json"
	"time"

	"crs/fhir"
	"crs/fhir/store"
)

// Pruning: a subscription's events older than Config.Retention that it has
// been delivered are removed from the outbox, oldest first, every
// Config.PruneEvery. The last delivered event is kept (event numbers are
// found from it), so are events not yet delivered, however old, and the
// events of the legacy layout. $events answers the events it still has and
// says, in the SubscriptionStatus's error, which were removed.

// Defaults of the pruning.
const (
	DefaultRetention  = 30 * 24 * time.Hour
	DefaultPruneEvery = time.Hour
	maxPrunePerRound  = 10000 // events removed per subscription per round
)

// pruneLoop prunes at start and then every PruneEvery until ctx ends.
func (m *Manager) pruneLoop(ctx context.Context) {
	t := time.NewTicker(m.cfg.PruneEvery)
	defer t.Stop()
	for {
		if _, err := m.Prune(ctx); err != nil {
			if fhir.KindOf(err) == fhir.NotSupported {
				m.cfg.Log.Info("subscription events are not pruned", "why", err.Error())
				return
			}
			if ctx.Err() == nil {
				m.cfg.Log.Warn("subscription events not pruned", "error", err.Error())
			}
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// Prune removes, for every subscription served, the delivered events
// older than the retention (but the last delivered one), and returns how
// many it removed. Error kind NotSupported when the store cannot remove
// records.
func (m *Manager) Prune(ctx context.Context) (int, error) {
	cutoff := m.cfg.Now().Add(-m.cfg.Retention)
	m.mu.RLock()
	ids := make([]string, 0, len(m.subs))
	for id := range m.subs {
		ids = append(ids, id)
	}
	m.mu.RUnlock()
	removed := 0
	for _, id := range ids {
		st, _, err := m.readState(ctx, id)
		if err != nil {
			continue // not yet recorded
		}
		first, err := m.firstKept(ctx, id, st.Delivered)
		if err != nil {
			return removed, err
		}
		var gone []string
		for n := first; n < st.Delivered && len(gone) < maxPrunePerRound; n++ {
			v, err := m.eng.OutboxRead(ctx, eventNType, eventID(id, n), 0)
			if err != nil {
				break
			}
			var ev event
			if err := json.Unmarshal(v.Body, &ev); err != nil || !ev.Time.Before(cutoff) {
				break
			}
			gone = append(gone, eventID(id, n))
		}
		if len(gone) == 0 {
			continue
		}
		if err := m.eng.OutboxRemove(ctx, eventNType, gone); err != nil {
			return removed, err
		}
		removed += len(gone)
		m.counts.update(id, func(k *count) { k.first = first + len(gone) })
	}
	return removed, nil
}

// firstKept returns the number of subscription id's oldest event still
// held in the new layout (pruning removes the oldest first, so the ones
// held run from it without a gap), searching up to last (an event that
// exists, unless last <= the legacy events). Events above the legacy ones
// and below it were pruned.
func (m *Manager) firstKept(ctx context.Context, id string, last int) (int, error) {
	read := func(ctx context.Context, typ, id string) (store.Version, error) {
		return m.eng.OutboxRead(ctx, typ, id, 0)
	}
	legacy, err := m.legacyCount(ctx, read, id)
	if err != nil {
		return 0, err
	}
	lo := legacy + 1
	if k := m.counts.get(id); k.first > lo {
		lo = k.first
	}
	if last <= lo {
		return lo, nil
	}
	exists := func(n int) (bool, error) {
		_, err := read(ctx, eventNType, eventID(id, n))
		switch {
		case err == nil:
			return true, nil
		case fhir.KindOf(err) == fhir.NotFound:
			return false, nil
		}
		return false, err
	}
	hi := last // exists
	if ok, err := exists(lo); err != nil || ok {
		return lo, err
	}
	for hi-lo > 1 { // lo missing, hi there
		mid := lo + (hi-lo)/2
		ok, err := exists(mid)
		if err != nil {
			return 0, err
		}
		if ok {
			hi = mid
		} else {
			lo = mid
		}
	}
	m.counts.update(id, func(k *count) { k.first = max(k.first, hi) })
	return hi, nil
}
