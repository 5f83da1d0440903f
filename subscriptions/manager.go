// Package subscriptions serves topic-based Subscriptions (the FHIR R4
// Subscriptions Backport IG 1.1.0): the topics as embedded data, the outbox
// that records each subscription's events in the same store transaction as
// the write that causes them, and the rest-hook delivery loop, a door out of
// the engine: one goroutine per subscription posts history Bundles to its
// endpoint as the subscriber's principal, audited, with retries and back-off.
package subscriptions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"crs/audit"
	"crs/auth"
	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/store"
)

// Engine is what the subscriptions need of the engine (*engine.Engine).
type Engine interface {
	Base() string
	ParseFilter(rt, query string) ([]fhir.RawParam, error)
	OutboxRead(ctx context.Context, typ, id string, versionID int) (store.Version, error)
	OutboxWrite(ctx context.Context, fn func(tx engine.OutboxTx) error) error
	Read(ctx context.Context, rt, id string) (store.Version, error)
	Search(ctx context.Context, rt string, params []fhir.RawParam, opt engine.SearchOptions) (*engine.Bundle, error)
	VRead(ctx context.Context, rt, id, vid string) (store.Version, error)
	Update(ctx context.Context, rt, id string, body []byte, ifMatch int) (engine.Result, error)
	OutboxScan(ctx context.Context, rt string, params []fhir.RawParam, fn func(store.Version) error) error
	OutboxRemove(ctx context.Context, typ string, ids []string) error
	Audit(ctx context.Context, rec audit.Record) error
}

// The outbox's own records.
const (
	eventType = engine.OutboxPrefix + "SubscriptionEvent" // legacy layout: id the subscription, version n event n (events.go)
	stateType = engine.OutboxPrefix + "SubscriptionState" // id: the subscription; owner and delivery progress
)

// Config configures a Manager.
type Config struct {
	// Hosts lists, per organisation (ODS code), the endpoint hosts its
	// subscriptions may deliver to (--subscription-hosts).
	Hosts map[string][]string
	// AllowLoopback lets any subscriber deliver to 127.0.0.1, ::1 or
	// localhost (development, tests).
	AllowLoopback bool
	// Client posts the notifications; a client with no timeout of its own
	// is given each subscription's timeout. http.DefaultClient when nil.
	Client *http.Client
	// RetryBase is the first back-off after a failed delivery (default 1s);
	// it doubles on each further failure up to RetryMax (default 5m).
	RetryBase, RetryMax time.Duration
	// ErrorAfter failed attempts in a row set the subscription's status to
	// error (default 3); OffAfter set it to off and stop delivery (default 10).
	ErrorAfter, OffAfter int
	// Retention is how long delivered events are kept for $events
	// (default 30 days; negative: forever); PruneEvery how often they are
	// pruned (default 1 hour). See prune.go.
	Retention, PruneEvery time.Duration
	Log                   *slog.Logger
	Now                   func() time.Time
}

// Manager is the subscriptions' outbox (engine.Outbox) and delivery loop.
type Manager struct {
	cfg    Config
	topics *Topics
	eng    Engine

	mu      sync.RWMutex
	subs    map[string]*sub      // by id: requested, active and error subscriptions
	byType  map[string]*typeSubs // by trigger resource type
	counts  counts               // event number hints (events.go)
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started bool
	closed  bool // Close was called: no delivery goroutine starts
}

// sub is a subscription being served.
type sub struct {
	spec  *spec
	owner *auth.Principal
	judge string // judgeKey: subscriptions with the same one match the same writes
	wake  chan struct{}
	stop  chan struct{}
	run   *runner // its delivery goroutine, which runs only while it has work (park.go)
}

// New returns a Manager; Start attaches the engine and starts delivery.
func New(cfg Config) (*Manager, error) {
	topics, err := LoadTopics()
	if err != nil {
		return nil, err
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = time.Second
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 5 * time.Minute
	}
	if cfg.ErrorAfter <= 0 {
		cfg.ErrorAfter = 3
	}
	if cfg.OffAfter <= cfg.ErrorAfter {
		cfg.OffAfter = max(10, cfg.ErrorAfter+1)
	}
	if cfg.Retention == 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.PruneEvery <= 0 {
		cfg.PruneEvery = DefaultPruneEvery
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	for org, hs := range cfg.Hosts {
		for i, h := range hs {
			cfg.Hosts[org][i] = strings.ToLower(h)
		}
	}
	return &Manager{cfg: cfg, topics: topics, subs: map[string]*sub{}, byType: map[string]*typeSubs{}}, nil
}

// Topics returns the subscription topics.
func (m *Manager) Topics() *Topics { return m.topics }

// system is the principal the delivery loop changes a subscription's status
// with.
var system = &auth.Principal{Subject: "crs-subscriptions", ClientID: "crs-subscriptions", Roles: []string{"admin"}, Scopes: auth.ParseScopes("system/*.cruds")}

// Start attaches the engine, loads the subscriptions in force and starts
// delivering. Close stops it.
func (m *Manager) Start(ctx context.Context, eng Engine) error {
	if err := m.Load(ctx, eng); err != nil {
		return err
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.mu.Lock()
	m.started = true
	for _, s := range m.subs {
		m.spawn(s)
	}
	m.mu.Unlock()
	if m.cfg.Retention > 0 {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.pruneLoop(m.ctx)
		}()
	}
	return nil
}

// Load attaches the engine and loads the subscriptions in force, without
// delivering: a process that only writes (crs import) records the events its
// writes cause, and the server delivers them when it next runs.
func (m *Manager) Load(ctx context.Context, eng Engine) error {
	m.eng = eng
	params := []fhir.RawParam{{Name: "status", Value: "requested,active,error"}}
	err := eng.OutboxScan(ctx, "Subscription", params, func(v store.Version) error {
		obj, err := fhir.Parse(v.Body, fhir.DefaultLimits)
		if err != nil {
			return err
		}
		s, err := parseSpec(obj, m.topics, eng.ParseFilter)
		if err != nil {
			m.cfg.Log.Warn("subscription not served", "id", v.ID, "error", err.Error())
			return nil
		}
		owner, err := m.owner(ctx, s.ID)
		if err != nil {
			m.cfg.Log.Warn("subscription has no owner", "id", s.ID, "error", err.Error())
			return nil
		}
		m.mu.Lock()
		m.put(s, owner)
		m.mu.Unlock()
		return nil
	})
	return err
}

// Close stops delivery and waits for the delivery goroutines.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	return nil
}

// state is the outbox's record of a subscription beside the resource.
type state struct {
	Owner     *auth.Principal `json:"owner"`
	Delivered int             `json:"delivered"` // events delivered (or acknowledged by a handshake) so far
	Failures  int             `json:"failures"`  // failed attempts in a row
	LastSent  time.Time       `json:"lastSent"`
	Handshook bool            `json:"handshook"` // the endpoint answered the handshake
}

func (m *Manager) readState(ctx context.Context, id string) (state, int, error) {
	v, err := m.eng.OutboxRead(ctx, stateType, id, 0)
	if err != nil {
		return state{}, 0, err
	}
	var st state
	if err := json.Unmarshal(v.Body, &st); err != nil {
		return state{}, 0, fhir.InternalError("subscription state", err)
	}
	return st, v.VersionID, nil
}

func (m *Manager) owner(ctx context.Context, id string) (*auth.Principal, error) {
	st, _, err := m.readState(ctx, id)
	if err != nil {
		return nil, err
	}
	if st.Owner == nil {
		return nil, errors.New("no owner")
	}
	return st.Owner, nil
}

// putState stores st as the next version of the subscription's state in tx.
func putState(ctx context.Context, tx engine.OutboxTx, id string, st state, now time.Time) error {
	next := 1
	if cur, err := tx.Read(ctx, stateType, id); err == nil {
		next = cur.VersionID + 1
	} else if fhir.KindOf(err) != fhir.NotFound {
		return err
	}
	b, err := json.Marshal(st)
	if err != nil {
		return fhir.InternalError("subscription state", err)
	}
	return tx.Put(ctx, store.Version{Type: stateType, ID: id, VersionID: next, LastUpdated: now, Method: "PUT", Body: b})
}

// typeSubs are the subscriptions on one resource type: those whose filter
// names one reference (subject=Patient/1) by that parameter and reference, so
// that a write is matched against the few that can match it, the others
// together; each set grouped by judgeKey, so that a write is judged once per
// group, however many subscriptions it holds.
type typeSubs struct {
	open      groups
	byRef     map[string]groups // "param|Type/id" → groups
	refParams []string          // the parameter names of byRef's keys
}

// groups are subscriptions by judgeKey, then by id.
type groups map[string]map[string]*sub

func (g groups) add(s *sub) {
	if g[s.judge] == nil {
		g[s.judge] = map[string]*sub{}
	}
	g[s.judge][s.spec.ID] = s
}

func (g groups) remove(s *sub) {
	delete(g[s.judge], s.spec.ID)
	if len(g[s.judge]) == 0 {
		delete(g, s.judge)
	}
}

// refKey returns the index key of a subscription with a reference filter.
func refKey(s *spec) string {
	for _, p := range s.Filter {
		if strings.ContainsAny(p.Name, ":.") || strings.Contains(p.Value, ",") {
			continue
		}
		typ, id, ok := strings.Cut(p.Value, "/")
		if ok && fhir.Served(typ) && fhir.ValidID(id) {
			return p.Name + "|" + p.Value
		}
	}
	return ""
}

// put serves s (m.mu held): a subscription of that id already served takes
// the new spec and is woken; off stops it.
func (m *Manager) put(s *spec, owner *auth.Principal) {
	if s.Status == "off" || s.Status == "" {
		m.drop(s.ID)
		return
	}
	if old, ok := m.subs[s.ID]; ok && old.spec.Topic == s.Topic && refKey(old.spec) == refKey(s) && old.judge == judgeKey(s, old.owner) {
		old.spec = s
		m.poke(old)
		return
	}
	m.drop(s.ID)
	ns := &sub{spec: s, owner: owner, judge: judgeKey(s, owner), wake: make(chan struct{}, 1), stop: make(chan struct{}), run: &runner{}}
	m.subs[s.ID] = ns
	ts := m.byType[s.Topic.Resource]
	if ts == nil {
		ts = &typeSubs{open: groups{}, byRef: map[string]groups{}}
		m.byType[s.Topic.Resource] = ts
	}
	if k := refKey(s); k != "" {
		if ts.byRef[k] == nil {
			ts.byRef[k] = groups{}
		}
		if name, _, _ := strings.Cut(k, "|"); !slices.Contains(ts.refParams, name) {
			ts.refParams = append(ts.refParams, name)
		}
		ts.byRef[k].add(ns)
	} else {
		ts.open.add(ns)
	}
	if m.started {
		m.spawn(ns)
	}
}

// drop stops serving subscription id (m.mu held).
func (m *Manager) drop(id string) {
	old, ok := m.subs[id]
	if !ok {
		return
	}
	close(old.stop)
	old.halt()
	delete(m.subs, id)
	ts := m.byType[old.spec.Topic.Resource]
	if k := refKey(old.spec); k != "" {
		ts.byRef[k].remove(old)
		if len(ts.byRef[k]) == 0 {
			delete(ts.byRef, k)
		}
	} else {
		ts.open.remove(old)
	}
}

// judgeKey says what decides whether a write is an event of a
// subscription, other than its status and end: the topic, the filter
// criteria and what the owner's access policy depends on (organisation,
// roles, local authority, launch patient, scopes; not who the client is).
// The outbox judges a write once for all the subscriptions that share one.
func judgeKey(s *spec, owner *auth.Principal) string {
	var b strings.Builder
	b.WriteString(s.Topic.URL)
	for _, p := range s.Filter {
		b.WriteString("\x00" + p.Name + "=" + p.Value)
	}
	b.WriteString("\x01")
	if owner == nil {
		return b.String()
	}
	roles := append([]string(nil), owner.Roles...)
	sort.Strings(roles)
	scopes := make([]string, len(owner.Scopes))
	for i, sc := range owner.Scopes {
		scopes[i] = sc.Context + "/" + sc.Type + "." + sc.Permissions
	}
	sort.Strings(scopes)
	fmt.Fprintf(&b, "%q %q %q %q %v %q", owner.Org, roles, owner.LocalAuthority, owner.Patient, owner.Anonymous, scopes)
	return b.String()
}

// allowed checks an endpoint host against the owner organisation's hosts.
func (m *Manager) allowed(s *spec, owner *auth.Principal) error {
	if s.Loopback && m.cfg.AllowLoopback {
		return nil
	}
	org := ""
	if owner != nil {
		org = owner.Org
	}
	for _, h := range m.cfg.Hosts[org] {
		if h == s.Host {
			return nil
		}
	}
	return fhir.Errorf(fhir.Invalid, "Subscription.channel.endpoint", "host %q is not one of the endpoint hosts configured for organisation %q", s.Host, org)
}

func messageOf(err error) string {
	var fe *fhir.Error
	if errors.As(err, &fe) && len(fe.Issues) > 0 {
		parts := make([]string, len(fe.Issues))
		for i, is := range fe.Issues {
			parts[i] = is.Diagnostics
		}
		return strings.Join(parts, "; ")
	}
	return err.Error()
}

func itoa(n int) string { return strconv.Itoa(n) }
