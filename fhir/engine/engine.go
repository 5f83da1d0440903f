// Package engine runs every FHIR interaction of crs: create, read, vread, update,
// delete, conditional variants, search, history and the CapabilityStatement. Every
// path into the data (REST, imports, the CLI) goes through an Engine, so parsing,
// validation, versioning and indexing happen in exactly one place. The engine
// knows nothing of HTTP: callers pass bodies, ids, query parameters and
// preconditions, and get versions, bundles and *fhir.Error values back.
package engine

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"crs/audit"
	"crs/fhir"
	"crs/fhir/search"
	"crs/fhir/store"
)

// Validator checks a parsed resource and returns its issues (errors reject it).
type Validator interface {
	Validate(res map[string]any) []fhir.Issue
	Known(resourceType string) bool
}

// ElementInfo tells which top-level elements of a type are in its summary and
// which are mandatory, for _summary.
type ElementInfo interface {
	SummaryElements(resourceType string) map[string]bool
	MandatoryElements(resourceType string) map[string]bool
}

// Config configures an Engine.
type Config struct {
	Store        store.Store
	Params       *search.Registry // search parameters; search.Default() when nil
	Validator    Validator        // base validation; required
	Elements     ElementInfo      // for _summary=true|text; those modes are refused when nil
	Limits       fhir.Limits      // body size and nesting; fhir.DefaultLimits when zero
	Base         string           // the advertised base URL, e.g. http://127.0.0.1:8080/fhir
	DefaultCount int              // page size when _count is absent (default fhir.DefaultPageSize)
	MaxCount     int              // largest page size (default fhir.MaxPageSize)
	TotalLimit   int              // without _total, Bundle.total is given only below this many matches (default 500; negative: always)
	Now          func() time.Time // clock; time.Now when nil
	Profiles     Profiles         // the pathway profiles; no profile checks when nil
	Access       Access           // the access policy; everything is open when nil (development mode)
	Audit        bool             // record an AuditEvent for every interaction
	Enforcement  Enforcement      // which writes the profiles check (default strict)
	AuditQueue   int              // AuditEvents that may wait for their commit before interactions are refused (default DefaultAuditQueue)
	// AuditJournal, when set, is where the AuditEvents of reads, searches,
	// operations and refusals become durable (group-committed fsync); the
	// engine materialises them into AuditEvent resources behind it until
	// Close. Without it they are group-committed to the store directly.
	// Writes record theirs in their own transaction either way: with the
	// journal as a compact pending row (auditpending.go) that the
	// materialiser stores as an AuditEvent with the journal's entries (the
	// store must then remove records outright: SQLite's), without it as the
	// AuditEvent itself.
	AuditJournal *audit.Journal
	QueryLimits  search.Limits // bounds on a query's size; search.DefaultLimits for zero fields
	// MaxConditionalDelete is how many resources one conditional delete may
	// delete (DefaultMaxConditionalDelete when 0).
	MaxConditionalDelete int
	// QueryTimeout bounds a search's store work (the page, its total and its
	// includes, and a conditional write's search): past it the search stops
	// with TooCostly. DefaultQueryTimeout when 0; negative: no bound.
	QueryTimeout time.Duration
	// ExplainPlans puts the store's description of how it found each search
	// page in Bundle.Plan (the X-Query-Plan header): a debugging aid, off by
	// default since its row counts are counted before access rules.
	ExplainPlans bool
	// Outbox, when set, records the events each write transaction causes
	// inside it (outbox.go; the subscriptions' outbox).
	Outbox Outbox
}

// DefaultTotalLimit is how many matches a search counts for Bundle.total when
// the client does not ask with _total: past it, counting would cost more than
// the page itself, so the total is left out (as the search page allows) and
// _total=accurate asks for it.
const DefaultTotalLimit = 500

// Engine runs FHIR interactions against a store.
type Engine struct {
	queryTimeout time.Duration // 0: unbounded (querytimeout.go)
	explainPlans bool
	store        store.Store
	params       *search.Registry
	validator    Validator
	elements     ElementInfo
	limits       fhir.Limits
	base         string
	defCount     int
	maxCount     int
	totalLimit   int
	now          func() time.Time
	profiles     Profiles
	access       Access
	audit        bool
	enforcement  Enforcement
	auditQ       *auditQueue
	auditDate    *fhir.SearchParam // AuditEvent's date, which its _lastUpdated is read as (auditalias.go); nil: no alias
	journal      *audit.Journal
	matStop      chan struct{}
	matNow       chan chan struct{}
	matDone      chan struct{}
	pending      pendingAudits // a write's audit records waiting in the store (auditpending.go)
	pendingTable pendingTable  // the store's table for them, if it has one (auditpendingtable.go)
	closeOnce    sync.Once
	queryLimits  search.Limits
	// maxCondDelete is how many resources one conditional delete may delete.
	maxCondDelete int
	outbox        Outbox // nil: no subscriptions (outbox.go)
}

// New returns an Engine for cfg.
func New(cfg Config) *Engine {
	e := &Engine{
		store: cfg.Store, params: cfg.Params, validator: cfg.Validator, elements: cfg.Elements, limits: cfg.Limits,
		base: strings.TrimRight(cfg.Base, "/"), defCount: cfg.DefaultCount, maxCount: cfg.MaxCount, totalLimit: cfg.TotalLimit, now: cfg.Now,
		profiles: cfg.Profiles, enforcement: cfg.Enforcement, access: cfg.Access, audit: cfg.Audit,
		queryLimits: cfg.QueryLimits, maxCondDelete: cfg.MaxConditionalDelete,
		queryTimeout: cfg.QueryTimeout, explainPlans: cfg.ExplainPlans,
	}
	switch {
	case e.queryTimeout == 0:
		e.queryTimeout = DefaultQueryTimeout
	case e.queryTimeout < 0:
		e.queryTimeout = 0
	}
	if e.maxCondDelete <= 0 {
		e.maxCondDelete = DefaultMaxConditionalDelete
	}
	e.auditQ = &auditQueue{store: cfg.Store, e: e, max: cfg.AuditQueue}
	if cfg.AuditJournal != nil && cfg.Audit {
		e.journal = cfg.AuditJournal
		e.matStop, e.matDone, e.matNow = make(chan struct{}), make(chan struct{}), make(chan chan struct{})
		e.pending.wake, e.pending.checked = make(chan struct{}, 1), -1
		e.pending.legacySeen = -1
		e.pendingTable, _ = cfg.Store.(pendingTable)
		e.kickPending() // what an earlier run left pending is stored at start
		defer func() { go e.materialise() }()
	}
	if e.auditQ.max <= 0 {
		e.auditQ.max = DefaultAuditQueue
	}
	if e.enforcement == "" {
		e.enforcement = EnforceStrict
	}
	if e.params == nil {
		e.params = search.Default()
	}
	if e.limits == (fhir.Limits{}) {
		e.limits = fhir.DefaultLimits
	}
	if e.defCount <= 0 {
		e.defCount = fhir.DefaultPageSize
	}
	if e.maxCount <= 0 {
		e.maxCount = fhir.MaxPageSize
	}
	if e.defCount > e.maxCount {
		e.defCount = e.maxCount
	}
	switch {
	case e.totalLimit == 0:
		e.totalLimit = DefaultTotalLimit
	case e.totalLimit < 0:
		e.totalLimit = 0 // count every match
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.store != nil && cfg.Outbox != nil {
		e.outbox = cfg.Outbox
		e.store = &outboxStore{Store: e.store, e: e, outbox: cfg.Outbox} // outbox.go: events in the write's transaction
	}
	if e.store != nil {
		e.store = &integrityStore{Store: e.store, e: e} // integrity.go: checks at the end of every write
	}
	e.auditDate = e.auditDateParam()
	return e
}

// Base returns the advertised base URL.
func (e *Engine) Base() string { return e.base }

// Ready reports whether the engine's store can serve.
func (e *Engine) Ready(ctx context.Context) error { return e.store.Ready(ctx) }

// Result is the outcome of a write interaction.
type Result struct {
	Version store.Version // the version written, or the existing one for a no-op
	Created bool          // a new resource was created (HTTP 201)
	NoOp    bool          // nothing was written (conditional create matched; update with unchanged content; delete of nothing)
	Issues  []fhir.Issue  // warnings and information to report with a success
}

// checkType fails unless the type is served and allows interaction i.
func checkType(rt string, i fhir.Interaction) error {
	if !fhir.Served(rt) {
		return fhir.Errorf(fhir.NotSupportedType, "", "resource type %q is not supported by this server", rt)
	}
	if !fhir.Allows(rt, i) {
		return fhir.Errorf(fhir.MethodNotAllowed, "", "the %s interaction is not allowed on %s", i, rt)
	}
	return nil
}

func checkID(id string) error {
	if !fhir.ValidID(id) {
		return fhir.Errorf(fhir.Invalid, "", "invalid id %q: ids are 1 to 64 of A-Z a-z 0-9 - .", id)
	}
	return nil
}

// newID returns a server-assigned id.
func newID() string { return fhir.NewUUID() }

// parse decodes, checks the type against the URL and validates a body that an
// interaction of mode ("create" or "update") is to write.
func (e *Engine) parse(rt string, body []byte, mode string) (fhir.Object, checked, error) {
	obj, err := fhir.Parse(body, e.limits)
	if err != nil {
		return nil, checked{}, err
	}
	if err := conditionalReferences(obj); err != nil {
		return nil, checked{}, err
	}
	c, err := e.check(rt, obj, mode)
	c.order = fhir.KeyOrder(body)
	return obj, c, err
}

// stamp sets the server-owned fields of obj, extracts its search values and
// returns the version to store, written in the key order the client sent
// (order; nil: the order of the definition).
func (e *Engine) stamp(obj fhir.Object, order *fhir.Order, rt, id string, vid int, now time.Time, method string) (store.Version, []fhir.IndexValue, error) {
	obj["id"] = id
	meta, _ := obj["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		obj["meta"] = meta
	}
	meta["versionId"] = strconv.Itoa(vid)
	meta["lastUpdated"] = formatInstant(now)
	delete(meta, "_versionId")
	delete(meta, "_lastUpdated")
	index, err := e.params.Extract(rt, obj)
	if err != nil {
		return store.Version{}, nil, fhir.WithOp("index", err)
	}
	body, err := fhir.MarshalOrdered(obj, order)
	if err != nil {
		return store.Version{}, nil, fhir.InternalError("encode", err)
	}
	return store.Version{Type: rt, ID: id, VersionID: vid, LastUpdated: now, Method: method, Body: body}, index, nil
}

// formatInstant renders t as a FHIR instant in UTC with millisecond precision.
func formatInstant(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// ParseETag reads an If-Match value such as W/"3" or "3" and returns the version
// id. An empty header gives 0 and no error.
func ParseETag(h string) (int, error) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, nil
	}
	s := strings.TrimPrefix(h, "W/")
	s = strings.Trim(s, `"`)
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fhir.Errorf(fhir.Invalid, "", "invalid ETag %q: expected W/\"<versionId>\"", h)
	}
	return n, nil
}

// Create stores body as a new resource of type rt with a server-assigned id. With
// ifNoneExist (a query string, as in the If-None-Exist header) it is a conditional
// create: when exactly one resource matches, nothing is stored and that resource
// is returned (NoOp); more than one match fails with TooManyMatches.
func (e *Engine) Create(ctx context.Context, rt string, body []byte, ifNoneExist string) (_ Result, err error) {
	ctx, ia := e.begin(ctx, "create", "C", "", "")
	defer func() { err = e.end(ctx, ia, err) }()
	if err := checkType(rt, fhir.Create); err != nil {
		return Result{}, err
	}
	obj, chk, err := e.parse(rt, body, "create")
	if err != nil {
		return Result{}, fhir.WithOp("create", err)
	}
	if _, err := e.conditions(ctx, rt, fhir.PermCreate); err != nil {
		return Result{}, err
	}
	if ifNoneExist != "" {
		if _, err := e.conditionQuery(rt, ifNoneExist, "If-None-Exist"); err != nil {
			return Result{}, err
		}
	}
	id := newID()
	v, index, err := e.stamp(obj, chk.order, rt, id, 1, e.now(), "POST")
	if err != nil {
		return Result{}, err
	}
	res := Result{Version: v, Created: true, Issues: chk.issues}
	// The AuditEvent of the create is rendered and indexed here, outside the
	// store's one writer; inside, it is only linked and stored.
	pre, err := e.prepareWriteAudit(ctx, writeRecord("create", "C", v))
	if err != nil {
		return Result{}, err
	}
	err = e.store.Write(ctx, func(tx store.Tx) error {
		if ifNoneExist != "" {
			found, err := e.conditional(ctx, tx, rt, ifNoneExist, "If-None-Exist")
			if err != nil {
				return err
			}
			if len(found) == 1 {
				res = Result{Version: found[0], NoOp: true}
				return e.auditInTx(ctx, tx, writeRecord("create", "C", found[0]))
			}
		}
		if chk.resolve {
			if err := e.resolveReferences(ctx, tx, obj, chk.allowed); err != nil {
				return err
			}
		}
		if err := tx.Put(ctx, v, index); err != nil {
			return err
		}
		if err := e.mayWrite(ctx, tx, rt, id, fhir.PermCreate); err != nil {
			return err
		}
		return e.preparedInTx(ctx, tx, pre)
	})
	if err != nil {
		return Result{}, fhir.WithOp("create", err)
	}
	return res, nil
}

// conditionQuery parses the query of a conditional interaction. Conditions must
// have search criteria (result parameters alone select everything); unknown
// parameters are errors.
func (e *Engine) conditionQuery(rt, query, what string) (*fhir.Query, error) {
	raw, err := ParseQueryString(query)
	if err != nil {
		return nil, err
	}
	if len(raw) == 0 {
		return nil, fhir.Errorf(fhir.Invalid, "", "%s needs at least one search parameter", what)
	}
	q, err := e.params.ParseQuery(rt, raw, search.ParseOptions{DefaultCount: 2, MaxCount: 2, Limits: e.queryLimits})
	if err != nil {
		return nil, err
	}
	if err := q.RequireCriteria(what); err != nil {
		return nil, err
	}
	q.Count = 2
	q.Total = fhir.TotalNone
	q.Cursor = ""
	return q, nil
}

// Read returns the current version of a resource. A deleted resource gives error
// kind Gone together with its tombstone version (for the ETag).
func (e *Engine) Read(ctx context.Context, rt, id string) (v store.Version, err error) {
	ctx, ia := e.begin(ctx, "read", "R", rt, id)
	defer func() { v, err = e.endRead(ctx, ia, v, err) }()
	if err := checkType(rt, fhir.Read); err != nil {
		return store.Version{}, err
	}
	if err := checkID(id); err != nil {
		return store.Version{}, err
	}
	if rt == "AuditEvent" {
		e.materialiseNow(ctx)
	}
	if err := e.mayRead(ctx, rt, id); err != nil {
		return store.Version{}, fhir.WithOp("read", err)
	}
	v, err = e.store.Read(ctx, rt, id)
	if err != nil {
		return store.Version{}, fhir.WithOp("read", err)
	}
	if v.Deleted {
		return v, fhir.Errorf(fhir.Gone, "", "%s/%s was deleted", rt, id)
	}
	return v, nil
}

// VRead returns one version of a resource. A tombstone version gives Gone.
func (e *Engine) VRead(ctx context.Context, rt, id, vid string) (v store.Version, err error) {
	ctx, ia := e.begin(ctx, "vread", "R", rt, id)
	defer func() { v, err = e.endRead(ctx, ia, v, err) }()
	if err := checkType(rt, fhir.VRead); err != nil {
		return store.Version{}, err
	}
	if err := checkID(id); err != nil {
		return store.Version{}, err
	}
	n, err := strconv.Atoi(vid)
	if err != nil || n < 1 {
		return store.Version{}, fhir.Errorf(fhir.NotFound, "", "no version %q of %s/%s", vid, rt, id)
	}
	if rt == "AuditEvent" {
		e.materialiseNow(ctx)
	}
	if err := e.mayRead(ctx, rt, id); err != nil {
		return store.Version{}, fhir.WithOp("vread", err)
	}
	v, err = e.store.VRead(ctx, rt, id, n)
	if err != nil {
		return store.Version{}, fhir.WithOp("vread", err)
	}
	if v.Deleted {
		return v, fhir.Errorf(fhir.Gone, "", "version %d of %s/%s is a deletion", n, rt, id)
	}
	return v, nil
}

// Update stores body as the next version of rt/id, creating the resource when it
// does not exist (update as create). ifMatch, when non-zero, is the version the
// caller expects to replace: a mismatch fails with PreconditionFailed.
func (e *Engine) Update(ctx context.Context, rt, id string, body []byte, ifMatch int) (_ Result, err error) {
	ctx, ia := e.begin(ctx, "update", "U", rt, id)
	defer func() { err = e.end(ctx, ia, err) }()
	if err := checkType(rt, fhir.Update); err != nil {
		return Result{}, err
	}
	if err := checkID(id); err != nil {
		return Result{}, err
	}
	obj, chk, err := e.parse(rt, body, "update")
	if err != nil {
		return Result{}, fhir.WithOp("update", err)
	}
	bodyID, hasID := obj["id"].(string)
	if !hasID {
		return Result{}, fhir.Errorf(fhir.Invalid, rt+".id", "the resource has no id: an update must carry the id %q of the URL", id)
	}
	if bodyID != id {
		return Result{}, fhir.Errorf(fhir.Invalid, rt+".id", "the id %q in the body does not match the id %q in the URL", bodyID, id)
	}
	res, err := e.update(ctx, rt, id, obj, chk, ifMatch, "PUT", nil, func(string) bool { return false })
	return res, fhir.WithOp("update", err)
}

// update writes obj as the next version of rt/id inside one store transaction.
// When cond is not nil, it runs first inside the same transaction and picks the
// target (conditional update); id is then the id to use when nothing matches.
func (e *Engine) update(ctx context.Context, rt, id string, obj fhir.Object, chk checked, ifMatch int, method string, cond func(tx store.Tx) (string, error), fresh func(id string) bool) (Result, error) {
	if _, err := e.conditions(ctx, rt, fhir.PermUpdate); err != nil {
		return Result{}, err
	}
	now := e.now()
	// Guess the next version outside the single writer so that encoding and
	// indexing happen in parallel; re-stamp inside only if the guess was wrong.
	guess := 1
	if cond == nil {
		if cur, err := e.store.Read(ctx, rt, id); err == nil {
			guess = cur.VersionID + 1
		} else if fhir.KindOf(err) != fhir.NotFound {
			return Result{}, err
		}
	}
	v, index, err := e.stamp(obj, chk.order, rt, id, guess, now, method)
	if err != nil {
		return Result{}, err
	}
	var res Result
	err = e.store.Write(ctx, func(tx store.Tx) error {
		target := id
		if cond != nil {
			if target, err = cond(tx); err != nil {
				return err
			}
		}
		if chk.resolve {
			if err := e.resolveReferences(ctx, tx, obj, chk.allowed); err != nil {
				return err
			}
		}
		if res, err = e.putNext(ctx, tx, rt, target, fresh(target), obj, chk.order, &stamped{v, index}, ifMatch, method, now); err != nil {
			return err
		}
		return e.auditInTx(ctx, tx, writeRecord("update", "U", res.Version))
	})
	if err != nil {
		return Result{}, err
	}
	res.Issues = chk.issues
	return res, nil
}

// stamped is a version prepared outside the store's writer, with its index.
type stamped struct {
	version store.Version
	index   []fhir.IndexValue
}

// putNext stores obj as the next version of rt/id inside tx, checking ifMatch
// against the current version. pre, when it was stamped for exactly that id and
// version, is stored as it is; otherwise obj is stamped again (in order).
//
// Access is asked first (mayChange), unless id is fresh: minted by the server
// for a conditional update that matched nothing, so certainly new.
func (e *Engine) putNext(ctx context.Context, tx store.Tx, rt, id string, fresh bool, obj fhir.Object, order *fhir.Order, pre *stamped, ifMatch int, method string, now time.Time) (Result, error) {
	if !fresh {
		if err := e.mayChange(ctx, tx, rt, id, fhir.PermUpdate); err != nil {
			return Result{}, err
		}
	}
	next := 1
	cur, err := tx.Read(ctx, rt, id)
	switch {
	case err == nil:
		next = cur.VersionID + 1
		if ifMatch != 0 && cur.VersionID != ifMatch {
			return Result{}, fhir.Errorf(fhir.PreconditionFailed, "", "If-Match version %d does not match the current version %d of %s/%s", ifMatch, cur.VersionID, rt, id)
		}
	case fhir.KindOf(err) == fhir.NotFound:
		if ifMatch != 0 {
			return Result{}, fhir.Errorf(fhir.PreconditionFailed, "", "If-Match version %d given but %s/%s does not exist", ifMatch, rt, id)
		}
	default:
		return Result{}, err
	}
	if next > 1 && !cur.Deleted && unchanged(cur.Body, obj) {
		return Result{Version: cur, NoOp: true}, nil
	}
	if pre == nil || pre.version.VersionID != next || pre.version.ID != id {
		v, index, err := e.stamp(obj, order, rt, id, next, now, method)
		if err != nil {
			return Result{}, err
		}
		pre = &stamped{v, index}
	}
	if err := tx.Put(ctx, pre.version, pre.index); err != nil {
		return Result{}, err
	}
	if err := e.mayWrite(ctx, tx, rt, id, fhir.PermUpdate); err != nil {
		return Result{}, err
	}
	return Result{Version: pre.version, Created: next == 1}, nil
}

// ConditionalUpdate updates the one resource of type rt matching query (a query
// string). No match: the resource is created (with the body's id when it has one,
// else a new id). One match: it is updated; a body id that differs is an error.
// More than one: TooManyMatches.
func (e *Engine) ConditionalUpdate(ctx context.Context, rt, query string, body []byte, ifMatch int) (_ Result, err error) {
	ctx, ia := e.begin(ctx, "update", "U", "", "")
	if ia != nil {
		ia.rec.Query = query
	}
	defer func() { err = e.end(ctx, ia, err) }()
	if err := checkType(rt, fhir.Update); err != nil {
		return Result{}, err
	}
	obj, chk, err := e.parse(rt, body, "update")
	if err != nil {
		return Result{}, fhir.WithOp("update", err)
	}
	if _, err := e.conditionQuery(rt, query, "a conditional update"); err != nil {
		return Result{}, err
	}
	bodyID, hasID := obj["id"].(string)
	if hasID {
		if err := checkID(bodyID); err != nil {
			return Result{}, err
		}
	}
	id := bodyID
	if !hasID {
		id = newID()
	}
	minted := ""
	res, err := e.update(ctx, rt, id, obj, chk, ifMatch, "PUT", func(tx store.Tx) (string, error) {
		found, err := e.conditional(ctx, tx, rt, query, "a conditional update")
		if err != nil {
			return "", err
		}
		if len(found) == 0 {
			if !hasID {
				minted = id
			}
			return id, nil
		}
		if hasID && bodyID != found[0].ID {
			return "", fhir.Errorf(fhir.Invalid, rt+".id", "the id %q in the body does not match the id %q of the resource the condition selects", bodyID, found[0].ID)
		}
		return found[0].ID, nil
	}, func(target string) bool { return target == minted })
	return res, fhir.WithOp("update", err)
}

// Delete deletes rt/id by storing a tombstone version. Deleting a resource that
// does not exist, or is already deleted, stores nothing (NoOp). ifMatch, when
// non-zero, must equal the current version.
func (e *Engine) Delete(ctx context.Context, rt, id string, ifMatch int) (_ Result, err error) {
	ctx, ia := e.begin(ctx, "delete", "D", rt, id)
	defer func() { err = e.end(ctx, ia, err) }()
	if err := checkType(rt, fhir.Delete); err != nil {
		return Result{}, err
	}
	if err := checkID(id); err != nil {
		return Result{}, err
	}
	res, err := e.delete(ctx, rt, ifMatch, func(store.Tx) (string, error) { return id, nil })
	return res, fhir.WithOp("delete", err)
}

// ConditionalDelete deletes the resources of type rt matching query: at most
// Config.MaxConditionalDelete of them (one by default); more is
// TooManyMatches and deletes nothing. No match is a NoOp.
func (e *Engine) ConditionalDelete(ctx context.Context, rt, query string, ifMatch int) (_ Result, err error) {
	ctx, ia := e.begin(ctx, "delete", "D", "", "")
	if ia != nil {
		ia.rec.Query = query
	}
	defer func() { err = e.end(ctx, ia, err) }()
	if err := checkType(rt, fhir.Delete); err != nil {
		return Result{}, err
	}
	if _, err := e.conditionQuery(rt, query, "a conditional delete"); err != nil {
		return Result{}, err
	}
	res, err := e.deleteMatches(ctx, rt, query, ifMatch)
	return res, fhir.WithOp("delete", err)
}

func (e *Engine) delete(ctx context.Context, rt string, ifMatch int, target func(store.Tx) (string, error)) (Result, error) {
	if _, err := e.conditions(ctx, rt, fhir.PermDelete); err != nil {
		return Result{}, err
	}
	now := e.now()
	res := Result{NoOp: true}
	err := e.store.Write(ctx, func(tx store.Tx) error {
		id, err := target(tx)
		if err != nil || id == "" {
			return err
		}
		if res, err = e.deleteInTx(ctx, tx, rt, id, ifMatch, now); err != nil {
			return err
		}
		return e.auditInTx(ctx, tx, writeRecord("delete", "D", res.Version))
	})
	if err != nil {
		return Result{}, err
	}
	return res, nil
}

// deleteInTx stores a tombstone for rt/id inside tx. Nothing to delete (never
// existed, already deleted) is a NoOp.
func (e *Engine) deleteInTx(ctx context.Context, tx store.Tx, rt, id string, ifMatch int, now time.Time) (Result, error) {
	if err := e.mayChange(ctx, tx, rt, id, fhir.PermDelete); err != nil {
		return Result{}, err
	}
	cur, err := tx.Read(ctx, rt, id)
	if fhir.KindOf(err) == fhir.NotFound {
		if ifMatch != 0 {
			return Result{}, fhir.Errorf(fhir.PreconditionFailed, "", "If-Match version %d given but %s/%s does not exist", ifMatch, rt, id)
		}
		return Result{NoOp: true}, nil
	}
	if err != nil {
		return Result{}, err
	}
	if ifMatch != 0 && cur.VersionID != ifMatch {
		return Result{}, fhir.Errorf(fhir.PreconditionFailed, "", "If-Match version %d does not match the current version %d of %s/%s", ifMatch, cur.VersionID, rt, id)
	}
	if cur.Deleted {
		return Result{Version: cur, NoOp: true}, nil
	}
	v := store.Version{Type: rt, ID: id, VersionID: cur.VersionID + 1, LastUpdated: now, Deleted: true, Method: "DELETE"}
	if err := tx.Put(ctx, v, nil); err != nil {
		return Result{}, err
	}
	return Result{Version: v}, nil
}
