package subscriptions

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"crs/auth"
	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/store"
)

var _ engine.Outbox = (*Manager)(nil)

// event is one recorded event of a subscription: event n is the record
// CrsSubscriptionEventN/{subscription}.{n} (events.go).
type event struct {
	Topic       string    `json:"topic"`
	Focus       string    `json:"focus"`       // Type/id
	Version     int       `json:"version"`     // the focus's version the event is about
	Interaction string    `json:"interaction"` // create or update
	Time        time.Time `json:"time"`
}

// before is what Before learnt of a write before it was put.
type before struct {
	existed bool            // a live version existed
	unseen  bool            // no subscription was a candidate when the write was put: none hears of it
	status  string          // a Subscription's status before
	prev    map[string]bool // judgeKey → the previous-state test passed
	deleted []sub           // for a delete: the subscriptions it is an event of
}

// batch is what a transaction recorded: subscription changes to apply and
// subscriptions to wake once it is durable.
type batch struct {
	changes []change
	wake    map[string]int // subscription id → its last event number recorded
}

type change struct {
	id    string
	spec  *spec // nil: deleted
	owner *auth.Principal
}

// Watches implements engine.Outbox: Subscriptions, and the types a
// subscription's topic is triggered by.
func (m *Manager) Watches(rt string) bool {
	if rt == "Subscription" {
		return true
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	ts := m.byType[rt]
	return ts != nil && (len(ts.open) > 0 || len(ts.byRef) > 0)
}

// Before implements engine.Outbox: whether the resource existed, and the
// previous-state tests of the subscriptions whose topic has one.
//
// A create or update that no subscription's group is a candidate for (a
// per-person DSCR's subscriptions on other people) needs nothing read: it
// is marked unseen, and Record leaves it, so that 10,000 filtered
// subscriptions do not cost every write of their type a read of its
// previous version. A subscription served after the write was put does not
// hear of it, as one served after Watches was asked does not.
func (m *Manager) Before(ctx context.Context, tx engine.OutboxTx, v store.Version, index []fhir.IndexValue) (any, error) {
	b := &before{}
	var gs []group
	if v.Type != "Subscription" && !v.Deleted {
		if gs = m.candidates(v.Type, index); len(gs) == 0 {
			b.unseen = true
			return b, nil
		}
	}
	cur, err := tx.Read(ctx, v.Type, v.ID)
	switch {
	case err == nil:
		b.existed = !cur.Deleted
	case fhir.KindOf(err) != fhir.NotFound:
		return nil, err
	}
	if v.Type == "Subscription" {
		if b.existed {
			var old struct {
				Status string `json:"status"`
			}
			_ = json.Unmarshal(cur.Body, &old)
			b.status = old.Status
		}
		return b, nil
	}
	if v.Deleted {
		if b.existed {
			return b, m.beforeDelete(ctx, tx, cur, b)
		}
		return b, nil
	}
	if !b.existed {
		return b, nil
	}
	for _, g := range gs {
		s := g.rep
		t := s.spec.Topic
		if t.Previous == "" || !t.Update {
			continue
		}
		ok, err := tx.Matches(auth.WithPrincipal(ctx, s.owner), v.Type, v.ID, criteria(t.Previous, s.owner))
		if err != nil {
			return nil, err
		}
		if b.prev == nil {
			b.prev = map[string]bool{}
		}
		b.prev[g.judge] = ok
	}
	return b, nil
}

// beforeDelete finds, before cur is deleted, the subscriptions whose topic a
// delete triggers and that hear of it: the resource as it was passes their
// filters and topic criteria and their owner could read it. A tombstone has
// no search values, so the candidates are found by the references in the
// resource's body.
func (m *Manager) beforeDelete(ctx context.Context, tx engine.OutboxTx, cur store.Version, b *before) error {
	for _, g := range m.candidates(cur.Type, bodyRefs(cur.Body)) {
		s := g.rep
		sp := s.spec
		if !sp.Topic.Delete {
			continue
		}
		params := append([]fhir.RawParam(nil), sp.Filter...)
		if sp.Topic.Current != "" {
			params = append(params, criteria(sp.Topic.Current, s.owner)...)
		}
		ok, err := tx.Matches(auth.WithPrincipal(ctx, s.owner), cur.Type, cur.ID, params)
		if err != nil {
			return err
		}
		if ok {
			b.deleted = append(b.deleted, m.members(cur.Type, g, b, true)...)
		}
	}
	return nil
}

// bodyRefs returns, as search values of every parameter name a reference
// filter may use, the literal references in a resource's body: enough to
// find the candidates (the judgement itself runs the filter's query).
func bodyRefs(body []byte) []fhir.IndexValue {
	obj, err := fhir.Parse(body, fhir.DefaultLimits)
	if err != nil {
		return nil
	}
	var out []fhir.IndexValue
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				if s, ok := c.(string); ok && k == "reference" {
					if typ, id, ok := strings.Cut(s, "/"); ok && fhir.Served(typ) && fhir.ValidID(id) {
						out = append(out, fhir.IndexValue{Param: "*", RefType: typ, RefID: id})
					}
					continue
				}
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(map[string]any(obj))
	return out
}

// group is a set of subscriptions that share a judgeKey, as a write's
// candidates: one of them (rep) stands for all in the judgement.
type group struct {
	judge string
	ref   string // the byRef key, "" for subscriptions without a reference filter
	rep   sub    // a copy of one of them
}

// candidates returns the groups of subscriptions a write of rt with these
// search values may concern: those whose reference filter one of the values
// meets, and those without one. The subscriptions themselves are copied only
// for a group the write matches (members), so a write that concerns none of
// 10,000 subscriptions of one DSCR costs one judgement, not 10,000.
func (m *Manager) candidates(rt string, index []fhir.IndexValue) []group {
	m.mu.RLock()
	defer m.mu.RUnlock()
	ts := m.byType[rt]
	if ts == nil {
		return nil
	}
	out := make([]group, 0, len(ts.open))
	add := func(ref string, gs groups) {
		for judge, members := range gs {
			for _, s := range members {
				out = append(out, group{judge: judge, ref: ref, rep: sub{spec: s.spec, owner: s.owner, judge: s.judge}})
				break
			}
		}
	}
	add("", ts.open)
	seen := map[string]bool{}
	for _, iv := range index {
		if iv.RefType == "" {
			continue
		}
		var keys []string
		if iv.Param == "*" { // any parameter (bodyRefs)
			for _, name := range ts.refParams {
				keys = append(keys, name+"|"+iv.RefType+"/"+iv.RefID)
			}
		} else {
			keys = []string{iv.Param + "|" + iv.RefType + "/" + iv.RefID}
		}
		for _, k := range keys {
			if seen[k] {
				continue
			}
			seen[k] = true
			add(k, ts.byRef[k])
		}
	}
	return out
}

// members returns copies of the subscriptions of group g on rt that take
// events now (their status and end) and take this kind of write (b),
// taken under the lock (put may change a served subscription's spec
// meanwhile).
func (m *Manager) members(rt string, g group, b *before, deleted bool) []sub {
	m.mu.RLock()
	defer m.mu.RUnlock()
	ts := m.byType[rt]
	if ts == nil {
		return nil
	}
	gs := ts.open
	if g.ref != "" {
		gs = ts.byRef[g.ref]
	}
	var out []sub
	for _, s := range gs[g.judge] {
		if m.live(s.spec, b, deleted) {
			out = append(out, sub{spec: s.spec, owner: s.owner, judge: s.judge})
		}
	}
	return out
}

// criteria parses a topic's query, with {org} the owner's organisation.
func criteria(q string, owner *auth.Principal) []fhir.RawParam {
	org := ""
	if owner != nil {
		org = owner.Org
	}
	raw, err := engine.ParseQueryString(strings.ReplaceAll(q, "{org}", org))
	if err != nil {
		return []fhir.RawParam{{Name: "_id", Value: "!"}} // a topic the tests load cannot have this
	}
	return raw
}

// Record implements engine.Outbox: a Subscription written is checked and its
// owner noted; a write that triggers a subscription's topic, passes its
// filters and may be read by its owner becomes that subscription's next
// event.
func (m *Manager) Record(ctx context.Context, tx engine.OutboxTx, writes []engine.OutboxWrite) (any, error) {
	var out batch
	for _, w := range writes {
		b, _ := w.Before.(*before)
		if b == nil {
			b = &before{}
		}
		if w.Version.Type == "Subscription" {
			c, err := m.recordSubscription(ctx, tx, w.Version, b)
			if err != nil {
				return nil, err
			}
			out.changes = append(out.changes, c)
			continue
		}
		if w.Version.Deleted {
			for _, s := range b.deleted {
				n, err := m.addEvent(ctx, tx, s.spec, w.Version, true)
				if err != nil {
					return nil, err
				}
				if out.wake == nil {
					out.wake = map[string]int{}
				}
				out.wake[s.spec.ID] = n
			}
			continue
		}
		if b.unseen {
			continue
		}
		for _, g := range m.candidates(w.Version.Type, w.Index) {
			t := g.rep.spec.Topic
			if (b.existed && !t.Update) || (!b.existed && !t.Create) {
				continue
			}
			ok, err := m.triggers(ctx, tx, &g.rep, w.Version, b)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			for _, s := range m.members(w.Version.Type, g, b, false) {
				n, err := m.addEvent(ctx, tx, s.spec, w.Version, b.existed)
				if err != nil {
					return nil, err
				}
				if out.wake == nil {
					out.wake = map[string]int{}
				}
				out.wake[s.spec.ID] = n
			}
		}
	}
	if len(out.changes) == 0 && len(out.wake) == 0 {
		return nil, nil
	}
	return &out, nil
}

// live reports whether subscription sp takes events now, and its topic
// this kind of write (a delete, or as b says, a create or an update).
func (m *Manager) live(sp *spec, b *before, deleted bool) bool {
	if (sp.Status != "active" && sp.Status != "error") || sp.ended(m.cfg.Now()) {
		return false
	}
	t := sp.Topic
	if deleted {
		return t.Delete
	}
	return (b.existed && t.Update) || (!b.existed && t.Create)
}

// triggers reports whether the write v, of a kind subscription s's topic
// takes, is an event of s: what it says holds for every subscription of the
// same judgeKey.
func (m *Manager) triggers(ctx context.Context, tx engine.OutboxTx, s *sub, v store.Version, b *before) (bool, error) {
	sp := s.spec
	t := sp.Topic
	octx := auth.WithPrincipal(ctx, s.owner)
	params := append([]fhir.RawParam(nil), sp.Filter...)
	if t.Current != "" && (t.Previous == "" || t.Both) {
		params = append(params, criteria(t.Current, s.owner)...)
	}
	current, err := tx.Matches(octx, v.Type, v.ID, params)
	if err != nil || t.Previous == "" {
		return current, err
	}
	prev := t.ForNew
	if b.existed {
		prev = b.prev[s.judge] != t.Negate
	}
	if t.Both {
		return prev && current, nil
	}
	if current && t.Current != "" {
		ok, err := tx.Matches(octx, v.Type, v.ID, append(params, criteria(t.Current, s.owner)...))
		if err != nil {
			return false, err
		}
		return prev || ok, nil
	}
	return current && prev, nil
}

// addEvent records the next event of subscription sp and returns its
// number.
func (m *Manager) addEvent(ctx context.Context, tx engine.OutboxTx, sp *spec, v store.Version, existed bool) (int, error) {
	last, err := m.lastEvent(ctx, tx.Read, sp.ID, true)
	if err != nil {
		return 0, err
	}
	next := last + 1
	ev := event{Topic: sp.Topic.URL, Focus: v.Type + "/" + v.ID, Version: v.VersionID, Interaction: "create", Time: v.LastUpdated}
	switch {
	case v.Deleted:
		ev.Interaction = "delete"
	case existed:
		ev.Interaction = "update"
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return 0, fhir.InternalError("subscription event", err)
	}
	if err := tx.Put(ctx, store.Version{Type: eventNType, ID: eventID(sp.ID, next), VersionID: 1, LastUpdated: v.LastUpdated, Method: "POST", Body: body}); err != nil {
		return 0, err
	}
	m.counts.update(sp.ID, func(k *count) { k.pending = max(k.pending, next) })
	return next, nil
}

// recordSubscription checks a Subscription as written and notes its owner
// (the organisation that created it) beside it.
func (m *Manager) recordSubscription(ctx context.Context, tx engine.OutboxTx, v store.Version, b *before) (change, error) {
	if v.Deleted {
		return change{id: v.ID}, nil
	}
	obj, err := fhir.Parse(v.Body, fhir.DefaultLimits)
	if err != nil {
		return change{}, err
	}
	sp, err := parseSpec(obj, m.topics, m.eng.ParseFilter)
	if err != nil {
		return change{}, err
	}
	caller := auth.PrincipalFrom(ctx)
	st, found := state{}, false
	if cur, err := tx.Read(ctx, stateType, v.ID); err == nil {
		if err := json.Unmarshal(cur.Body, &st); err != nil {
			return change{}, fhir.InternalError("subscription state", err)
		}
		found = st.Owner != nil
	} else if fhir.KindOf(err) != fhir.NotFound {
		return change{}, err
	}
	if caller != system {
		switch {
		case sp.Status == b.status && b.status != "":
		case sp.Status == "requested" || sp.Status == "off":
		default:
			return change{}, fhir.Errorf(fhir.Invalid, "Subscription.status", "a client sets status requested (or off); the server sets active and error")
		}
		if found && st.Owner.Org != "" && (caller == nil || caller.Org != st.Owner.Org) && !isAdmin(caller) {
			return change{}, fhir.Errorf(fhir.Forbidden, "", "Subscription/%s is not one this caller may update", v.ID)
		}
	}
	if !found {
		st = state{Owner: ownerOf(caller)}
	}
	if err := m.allowed(sp, st.Owner); err != nil {
		return change{}, err
	}
	if !found || (caller != system && sp.Status == "requested" && b.status != "requested") {
		st.Failures = 0
		if err := putState(ctx, tx, v.ID, st, v.LastUpdated); err != nil {
			return change{}, err
		}
	}
	return change{id: v.ID, spec: sp, owner: st.Owner}, nil
}

// ownerOf is the principal a subscription's events are judged and delivered
// as: the creator's identity and roles, without the token's scopes and id.
func ownerOf(p *auth.Principal) *auth.Principal {
	if p == nil {
		return &auth.Principal{Anonymous: true}
	}
	cp := *p
	cp.JTI = ""
	return &cp
}

func isAdmin(p *auth.Principal) bool {
	if p == nil {
		return false
	}
	for _, r := range p.Roles {
		if r == "admin" {
			return true
		}
	}
	return false
}

// Committed implements engine.Outbox: serve the subscriptions written and
// wake those with new events.
func (m *Manager) Committed(recorded any) {
	b, _ := recorded.(*batch)
	if b == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range b.changes {
		if c.spec == nil {
			m.drop(c.id)
			m.counts.forget(c.id) // its numbers' hints
			continue
		}
		m.put(c.spec, c.owner)
	}
	for id, n := range b.wake {
		m.counts.update(id, func(k *count) { k.committed = max(k.committed, n) })
		if s, ok := m.subs[id]; ok {
			m.poke(s)
		}
	}
}
