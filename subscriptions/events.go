package subscriptions

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"

	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/store"
)

// Event n of subscription s is the record CrsSubscriptionEventN/{s}.{n}, a
// first version of its own: recording one inserts two rows, where a next
// version of one record per subscription (the legacy layout, eventType)
// made the store flush the transaction's buffered search values and clear
// the record's own at every event. Events recorded in the legacy layout
// (numbers 1..legacy) are still read from it; new ones follow them.
const eventNType = engine.OutboxPrefix + "SubscriptionEventN"

// eventID is the id of event n of subscription sub.
func eventID(sub string, n int) string { return sub + "." + strconv.Itoa(n) }

// readFunc reads an outbox record's current version (a transaction's, or
// the store's).
type readFunc func(ctx context.Context, typ, id string) (store.Version, error)

// counts are what the manager knows of each subscription's event numbers:
// hints that spare most look-ups, never trusted without one.
type counts struct {
	mu sync.Mutex
	m  map[string]*count
}

type count struct {
	legacy    int // events in the legacy layout (-1: not yet read)
	committed int // the last event number known durable
	pending   int // the last number a transaction not yet known to be durable gave
	first     int // the oldest event not pruned, when known (0: not known)
}

func (c *counts) get(id string) count {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*count{}
	}
	if k, ok := c.m[id]; ok {
		return *k
	}
	c.m[id] = &count{legacy: -1}
	return *c.m[id]
}

func (c *counts) update(id string, f func(k *count)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*count{}
	}
	k, ok := c.m[id]
	if !ok {
		k = &count{legacy: -1}
		c.m[id] = k
	}
	f(k)
}

func (c *counts) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
}

// legacyCount returns how many events subscription id has in the legacy
// layout.
func (m *Manager) legacyCount(ctx context.Context, read readFunc, id string) (int, error) {
	if k := m.counts.get(id); k.legacy >= 0 {
		return k.legacy, nil
	}
	n := 0
	v, err := read(ctx, eventType, id)
	switch {
	case err == nil:
		n = v.VersionID
	case fhir.KindOf(err) != fhir.NotFound:
		return 0, err
	}
	// The last delivered event is never pruned: a floor the walk up
	// starts from when older ones were.
	delivered := 0
	if v, err := read(ctx, stateType, id); err == nil {
		var st state
		if json.Unmarshal(v.Body, &st) == nil {
			delivered = st.Delivered
		}
	} else if fhir.KindOf(err) != fhir.NotFound {
		return 0, err
	}
	m.counts.update(id, func(k *count) {
		k.legacy = n
		k.committed = max(k.committed, delivered)
	})
	return n, nil
}

// lastEvent returns the number of subscription id's last event as read
// sees it. Events are numbered without gaps above the legacy ones and the
// last delivered one (pruning keeps those), so it starts from what the
// manager last knew and walks (or gallops) to the last record there is.
func (m *Manager) lastEvent(ctx context.Context, read readFunc, id string, inTx bool) (int, error) {
	legacy, err := m.legacyCount(ctx, read, id)
	if err != nil {
		return 0, err
	}
	exists := func(n int) (bool, error) {
		if n <= legacy {
			return true, nil
		}
		_, err := read(ctx, eventNType, eventID(id, n))
		switch {
		case err == nil:
			return true, nil
		case fhir.KindOf(err) == fhir.NotFound:
			return false, nil
		}
		return false, err
	}
	k := m.counts.get(id)
	floor := max(legacy, k.committed)
	n := floor
	if inTx && k.pending > n {
		// A number a transaction gave and this one may see (the same
		// group commit); a rolled-back one is not there.
		n = k.pending
		for n > floor {
			ok, err := exists(n)
			if err != nil {
				return 0, err
			}
			if ok {
				break
			}
			n--
		}
	}
	// Gallop past n while events exist, then halve back to the last.
	lo, step := n, 1
	for {
		ok, err := exists(lo + step)
		if err != nil {
			return 0, err
		}
		if !ok {
			break
		}
		lo += step
		step *= 2
	}
	hi := lo + step // lo exists, hi does not
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		ok, err := exists(mid)
		if err != nil {
			return 0, err
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	if !inTx {
		m.counts.update(id, func(k *count) { k.committed = max(k.committed, lo) })
	}
	return lo, nil
}

// readEvent reads event n of subscription id.
func (m *Manager) readEvent(ctx context.Context, id string, n int) (store.Version, error) {
	legacy, err := m.legacyCount(ctx, func(ctx context.Context, typ, id string) (store.Version, error) {
		return m.eng.OutboxRead(ctx, typ, id, 0)
	}, id)
	if err != nil {
		return store.Version{}, err
	}
	if n <= legacy {
		return m.eng.OutboxRead(ctx, eventType, id, n)
	}
	return m.eng.OutboxRead(ctx, eventNType, eventID(id, n), 0)
}
