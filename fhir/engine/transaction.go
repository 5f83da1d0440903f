package engine

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"time"

	"crs/audit"
	"crs/fhir"
	"crs/fhir/search"
	"crs/fhir/store"
)

// MaxBundleEntries bounds the entries of a transaction or batch Bundle.
const MaxBundleEntries = 1000

// bundleEntry is one parsed request entry of a transaction or batch.
type bundleEntry struct {
	index    int
	fullURL  string
	method   string // DELETE, POST, PUT, PATCH, GET (HEAD is read as GET)
	url      string
	rt, id   string // from request.url
	vid      string // GET Type/id/_history/vid
	query    string // conditional PUT/DELETE, or GET search
	resource fhir.Object
	patch    []fhir.PatchOp
	ifNone   string
	ifMatch  int
	fresh    bool        // id minted by the server for a conditional PUT that matched nothing
	checked  checked     // what validation found (POST, PUT, PATCH)
	patched  fhir.Object // the result of a PATCH entry
	deleted  []string    // the ids a conditional DELETE deleted, for the audit record
	// inCreateBounds: checkCreates found the created resource within the
	// caller's create bounds (createcheck.go).
	inCreateBounds bool
	// noMatch: preResolveCreates found that the ifNoneExist condition matches
	// nothing (condcreate_batch.go).
	noMatch bool
	// pre: the create stamped before the write began (prestamp.go).
	pre *prestamped

	response BundleEntry // filled in when processed
}

// written is the resource an entry wrote, if any.
func (b *bundleEntry) written() fhir.Object {
	if b.method == "PATCH" {
		return b.patched
	}
	return b.resource
}

// finishEntry checks the references of what an entry wrote, once every entry
// of the transaction is written, and reports validation warnings with it.
func (e *Engine) finishEntry(ctx context.Context, tx store.Tx, be *bundleEntry) error {
	obj := be.written()
	if obj == nil || be.response.Response == nil {
		return nil
	}
	if be.method == "POST" && !be.inCreateBounds {
		if err := e.mayWrite(ctx, tx, be.rt, be.id, fhir.PermCreate); err != nil {
			return be.entryError(err)
		}
	}
	if be.checked.resolve {
		if err := e.resolveRefs(ctx, tx, be.references()); err != nil {
			return be.entryError(err)
		}
	}
	if len(be.checked.issues) > 0 && be.response.Response.Outcome == nil {
		be.response.Response.Outcome, _ = fhir.Marshal(fhir.Outcome(be.checked.issues))
	}
	return nil
}

func (b *bundleEntry) where() string { return "Bundle.entry[" + strconv.Itoa(b.index) + "]" }

// entryError prefixes the issues of err with the entry's location, so that the
// caller learns which entry failed.
func (b *bundleEntry) entryError(err error) error {
	fe := fhir.AsError(err)
	out := &fhir.Error{Kind: fe.Kind, Op: fe.Op, Err: fe.Err}
	for _, is := range fe.Issues {
		if is.Expression == "" {
			is.Expression = b.where()
		} else if !strings.HasPrefix(is.Expression, "Bundle.") {
			is.Expression = b.where() + ".resource" + inResource(is.Expression, b.rt)
		}
		is.Diagnostics = "entry " + strconv.Itoa(b.index) + " (" + b.method + " " + b.url + "): " + is.Diagnostics
		out.Issues = append(out.Issues, is)
	}
	return out
}

// inResource turns a FHIRPath rooted at the resource type ("CarePlan.period")
// into the rest of a path below Bundle.entry[n].resource (".period"): the
// type name is not an element of the entry.
func inResource(expr, rt string) string {
	if expr == rt {
		return ""
	}
	if rest, ok := strings.CutPrefix(expr, rt+"."); ok && rt != "" {
		return "." + rest
	}
	if i := strings.IndexByte(expr, '.'); i > 0 && fhir.Served(expr[:i]) {
		return expr[i:]
	}
	return "." + expr
}

// Bundle processes a transaction or batch Bundle posted to the base URL and
// returns the transaction-response or batch-response Bundle.
//
// A transaction is atomic: every entry is processed inside one store transaction
// in the order the FHIR spec gives (DELETE, POST, PUT and PATCH, GET); urn:uuid
// fullUrls and conditional references ("Patient?identifier=…") are resolved and
// rewritten; if any entry fails, nothing is stored and the error names the entry.
// A batch processes each entry on its own; each gets its own status or
// OperationOutcome.
func (e *Engine) Bundle(ctx context.Context, body []byte, opt SearchOptions) (b *Bundle, err error) {
	ctx, ia := e.begin(ctx, "transaction", "E", "", "")
	defer func() { b, err = endBundle(b, e.end(ctx, ia, err)) }()
	obj, err := fhir.Parse(body, e.limits)
	if err != nil {
		return nil, fhir.WithOp("bundle", err)
	}
	return e.bundle(ctx, ia, obj, fhir.KeyOrder(body), opt)
}

// bundle processes a parsed transaction or batch Bundle (order: the key order
// it was sent in, nil for definition order) for Bundle and BundleTree.
func (e *Engine) bundle(ctx context.Context, ia *interaction, obj fhir.Object, bodyOrder *fhir.Order, opt SearchOptions) (*Bundle, error) {
	if fhir.ResourceType(obj) != "Bundle" {
		return nil, fhir.Errorf(fhir.Invalid, "resourceType", "POST to the base URL takes a transaction or batch Bundle, not %q", fhir.ResourceType(obj))
	}
	typ, _ := obj["type"].(string)
	if typ != "transaction" && typ != "batch" {
		return nil, fhir.Errorf(fhir.Invalid, "Bundle.type", "Bundle.type must be transaction or batch, not %q", typ)
	}
	if err := checkBundleShape(obj); err != nil {
		return nil, err
	}
	entries, err := e.bundleEntries(obj, typ, bodyOrder)
	if err != nil {
		return nil, err
	}
	if typ == "batch" {
		if ia != nil {
			ia.rec.Interaction = "batch"
		}
		b := e.batch(ctx, entries, opt)
		if ia != nil {
			// Each entry recorded its own write or failure; the batch itself is
			// recorded too, naming what its successful entries disclosed.
			ia.recorded.Store(false)
			ia.rec.Entities = entriesRecord("batch", entries).Entities
		}
		return b, nil
	}
	return e.transaction(ctx, entries, opt)
}

// bundleEntries parses the entries of a Bundle of type typ (a batch keeps a
// failed entry with its error response; a transaction fails on it).
func (e *Engine) bundleEntries(obj fhir.Object, typ string, bodyOrder *fhir.Order) ([]*bundleEntry, error) {
	raw, _ := obj["entry"].([]any)
	if len(raw) > MaxBundleEntries {
		return nil, fhir.Errorf(fhir.TooLarge, "Bundle.entry", "the Bundle has %d entries; the limit is %d", len(raw), MaxBundleEntries)
	}
	entries := make([]*bundleEntry, 0, len(raw))
	seen := map[string]int{}
	order := bodyOrder.Member("entry")
	for i, r := range raw {
		be, err := e.parseEntry(i, r, typ == "transaction")
		be.checked.order = order.Item(i).Member("resource")
		if err != nil {
			if typ == "batch" {
				be.response = errorEntry(err)
				entries = append(entries, be)
				continue
			}
			return nil, err
		}
		if be.fullURL != "" {
			if j, dup := seen[be.fullURL]; dup {
				return nil, fhir.Errorf(fhir.Invalid, be.where()+".fullUrl", "fullUrl %q of entry %d repeats the fullUrl of entry %d", be.fullURL, i, j)
			}
			seen[be.fullURL] = i
		}
		entries = append(entries, be)
	}
	return entries, nil
}

// parseEntry reads one entry's request and resource. The returned entry is never
// nil, so a batch can report the error against it.
func (e *Engine) parseEntry(i int, r any, transaction bool) (*bundleEntry, error) {
	be := &bundleEntry{index: i}
	m, ok := r.(map[string]any)
	if !ok {
		return be, fhir.Errorf(fhir.Invalid, be.where(), "an entry must be an object")
	}
	be.fullURL, _ = m["fullUrl"].(string)
	req, ok := m["request"].(map[string]any)
	if !ok {
		return be, fhir.Errorf(fhir.Invalid, be.where()+".request", "entry %d has no request", i)
	}
	be.method, _ = req["method"].(string)
	be.url, _ = req["url"].(string)
	if be.method == "HEAD" {
		be.method = "GET"
	}
	be.ifNone, _ = req["ifNoneExist"].(string)
	if im, _ := req["ifMatch"].(string); im != "" {
		n, err := ParseETag(im)
		if err != nil {
			return be, be.entryError(err)
		}
		be.ifMatch = n
	}
	u := strings.TrimPrefix(strings.TrimPrefix(be.url, e.base), "/")
	path, query, _ := strings.Cut(u, "?")
	be.query = query
	seg := strings.Split(path, "/")
	be.rt = seg[0]
	if be.rt == "" {
		return be, fhir.Errorf(fhir.Invalid, be.where()+".request.url", "entry %d has no request.url", i)
	}
	switch {
	case len(seg) == 2:
		be.id = seg[1]
	case len(seg) == 4 && seg[2] == "_history" && be.method == "GET":
		be.id, be.vid = seg[1], seg[3]
	case len(seg) != 1:
		return be, fhir.Errorf(fhir.Invalid, be.where()+".request.url", "cannot process request.url %q", be.url)
	}
	res, hasRes := m["resource"].(map[string]any)
	switch be.method {
	case "POST":
		if be.id != "" || be.query != "" {
			return be, fhir.Errorf(fhir.Invalid, be.where()+".request.url", "POST takes a type, e.g. \"Patient\", not %q", be.url)
		}
	case "PUT":
		if (be.id == "") == (be.query == "") {
			return be, fhir.Errorf(fhir.Invalid, be.where()+".request.url", "PUT takes Type/id or Type?search, not %q", be.url)
		}
	case "DELETE":
		if (be.id == "") == (be.query == "") {
			return be, fhir.Errorf(fhir.Invalid, be.where()+".request.url", "DELETE takes Type/id or Type?search, not %q", be.url)
		}
	case "PATCH":
		if be.id == "" {
			return be, fhir.Errorf(fhir.Invalid, be.where()+".request.url", "PATCH takes Type/id, not %q", be.url)
		}
		if !hasRes || fhir.ResourceType(res) != "Binary" {
			return be, fhir.Errorf(fhir.Invalid, be.where()+".resource", "a PATCH entry carries the JSON Patch as a Binary resource")
		}
		ct, _ := res["contentType"].(string)
		data, _ := res["data"].(string)
		patch, err := base64.StdEncoding.DecodeString(data)
		if !strings.HasPrefix(ct, "application/json-patch+json") || err != nil {
			return be, fhir.Errorf(fhir.Invalid, be.where()+".resource", "the Binary of a PATCH entry must be application/json-patch+json with base64 data")
		}
		if be.patch, err = fhir.ParsePatch(patch, e.limits); err != nil {
			return be, be.entryError(err)
		}
	case "GET":
		return be, nil
	default:
		return be, fhir.Errorf(fhir.Invalid, be.where()+".request.method", "unsupported request.method %q", be.method)
	}
	if !fhir.Served(be.rt) {
		return be, be.entryError(fhir.Errorf(fhir.NotSupportedType, "", "resource type %q is not supported", be.rt))
	}
	if be.method == "POST" || be.method == "PUT" {
		if !hasRes {
			return be, fhir.Errorf(fhir.Invalid, be.where()+".resource", "a %s entry needs a resource", be.method)
		}
		be.resource = res
		mode := "create"
		if be.method == "PUT" {
			mode = "update"
		}
		chk, err := e.check(be.rt, res, mode)
		if err != nil {
			return be, be.entryError(err)
		}
		be.checked = chk
		if be.method == "PUT" && be.id != "" {
			if err := checkID(be.id); err != nil {
				return be, be.entryError(err)
			}
			if fhir.ID(res) != be.id {
				return be, be.entryError(fhir.Errorf(fhir.Invalid, be.rt+".id", "the resource id %q does not match the id %q of request.url", fhir.ID(res), be.id))
			}
		}
	}
	return be, nil
}

// errorEntry is the response entry of a failed batch entry.
func errorEntry(err error) BundleEntry {
	fe := fhir.AsError(err)
	oo, _ := fhir.Marshal(fhir.Outcome(fe.Issues))
	return BundleEntry{Response: &EntryResponse{Status: statusLine(fe.Kind.Status()), Outcome: oo}}
}

func statusLine(code int) string {
	switch code {
	case 200:
		return "200 OK"
	case 201:
		return "201 Created"
	case 204:
		return "204 No Content"
	}
	return strconv.Itoa(code)
}

// order gives the processing rank of a method in a transaction.
func order(method string) int {
	switch method {
	case "DELETE":
		return 0
	case "POST":
		return 1
	case "PUT", "PATCH":
		return 2
	}
	return 3
}

func (e *Engine) transaction(ctx context.Context, entries []*bundleEntry, opt SearchOptions) (*Bundle, error) {
	sorted, ids, now, err := e.prepareTransaction(ctx, entries)
	if err != nil {
		return nil, err
	}
	e.prestamp(sorted, ids, now) // prestamp.go: outside the store's one writer
	err = e.store.Write(ctx, func(tx store.Tx) error {
		return e.transactionInTx(ctx, tx, entries, sorted, ids, now, opt, nil)
	})
	if err != nil {
		return nil, fhir.WithOp("transaction", err)
	}
	return e.transactionResponse(entries), nil
}

// transactionResponse is the transaction-response Bundle of entries processed.
func (e *Engine) transactionResponse(entries []*bundleEntry) *Bundle {
	b := e.newBundle("transaction-response")
	for _, be := range entries {
		b.Entry = append(b.Entry, be.response)
	}
	return b
}

// prepareTransaction checks that the caller may use each entry's interaction,
// mints the ids of the creates (ids maps their fullUrls to Type/id) and sorts
// the entries in processing order.
func (e *Engine) prepareTransaction(ctx context.Context, entries []*bundleEntry) (sorted []*bundleEntry, ids map[string]string, now time.Time, err error) {
	for _, be := range entries {
		if err := checkType(be.rt, interactionOf(be)); err != nil {
			return nil, nil, now, be.entryError(err)
		}
		if _, err := e.conditions(ctx, be.rt, fhir.PermissionOf(interactionOf(be))); err != nil {
			return nil, nil, now, be.entryError(err)
		}
	}
	now = e.now()
	// New ids for the creates, so that urn:uuid references can be rewritten.
	ids = map[string]string{} // fullUrl → Type/id
	for _, be := range entries {
		switch {
		case be.method == "POST":
			be.id = newID()
			if be.fullURL != "" {
				ids[be.fullURL] = be.rt + "/" + be.id
			}
		case be.method == "PUT" && be.id != "" && strings.HasPrefix(be.fullURL, "urn:"):
			ids[be.fullURL] = be.rt + "/" + be.id
		}
	}
	sorted = make([]*bundleEntry, len(entries))
	copy(sorted, entries)
	sort.SliceStable(sorted, func(i, j int) bool { return order(sorted[i].method) < order(sorted[j].method) })
	return sorted, ids, now, nil
}

// transactionInTx processes a transaction's entries inside tx and stores its
// AuditEvent, which also names read (the records the transaction's own
// lookups disclosed, TransactionWith).
func (e *Engine) transactionInTx(ctx context.Context, tx store.Tx, entries, sorted []*bundleEntry, ids map[string]string, now time.Time, opt SearchOptions, read []store.Version) error {
	// Conditional creates and conditional updates pick their targets first, so
	// that references to them resolve to the resource actually used.
	if err := e.preResolveCreates(ctx, tx, sorted); err != nil {
		return err
	}
	for _, be := range sorted {
		if err := e.resolveTarget(ctx, tx, be, ids, opt); err != nil {
			return be.entryError(err)
		}
	}
	confirmPrestamps(sorted, ids) // prestamp.go
	for _, be := range sorted {
		if be.resource == nil || be.pre != nil { // prestamped: rewritten already
			continue
		}
		if err := e.rewriteReferences(ctx, tx, be, be.resource, ids); err != nil {
			return err
		}
	}
	for _, be := range sorted {
		if err := e.processInTx(ctx, tx, be, now, opt); err != nil {
			return be.entryError(err)
		}
	}
	// References are checked once everything is written, so that entries
	// may refer to each other in any order.
	if err := e.checkCreates(ctx, tx, sorted); err != nil {
		return err
	}
	rtx := &resolvedTx{Tx: tx} // nothing is written while the entries are finished
	for _, be := range sorted {
		if err := e.finishEntry(ctx, rtx, be); err != nil {
			return err
		}
	}
	if err := e.moveReferences(ctx, tx, now); err != nil { // MergePatients only
		return err
	}
	return e.auditInTx(ctx, tx, withRead(entriesRecord("transaction", entries), read))
}

// resolveTarget runs the condition of a conditional create or update inside tx.
// A conditional create that matches is answered with the match and stores
// nothing; a conditional update gets the id it will write. The fullUrl of the
// entry is mapped to the resource it ends up naming.
func (e *Engine) resolveTarget(ctx context.Context, tx store.Tx, be *bundleEntry, ids map[string]string, opt SearchOptions) error {
	switch {
	case be.method == "POST" && be.ifNone != "" && !be.noMatch:
		found, err := e.conditional(ctx, tx, be.rt, be.ifNone, "ifNoneExist")
		if err != nil {
			return err
		}
		if len(found) == 1 {
			be.id = found[0].ID
			be.response = e.writeEntry(found[0], "200 OK", opt)
			be.resource = nil // nothing to store
		}
	case be.method == "PUT" && be.query != "":
		found, err := e.conditional(ctx, tx, be.rt, be.query, "request.url")
		if err != nil {
			return err
		}
		bodyID := fhir.ID(be.resource)
		switch {
		case len(found) == 1 && bodyID != "" && bodyID != found[0].ID:
			return fhir.Errorf(fhir.Invalid, be.rt+".id", "the resource id %q does not match the resource %q the condition selects", bodyID, found[0].ID)
		case len(found) == 1:
			be.id = found[0].ID
		case bodyID != "":
			be.id = bodyID
		default:
			be.id, be.fresh = newID(), true
		}
	default:
		return nil
	}
	if be.fullURL != "" {
		ids[be.fullURL] = be.rt + "/" + be.id
	}
	return nil
}

// interactionOf maps an entry's method to the interaction it needs.
func interactionOf(be *bundleEntry) fhir.Interaction {
	switch be.method {
	case "POST":
		return fhir.Create
	case "PUT", "PATCH":
		return fhir.Update
	case "DELETE":
		return fhir.Delete
	}
	if be.id != "" {
		return fhir.Read
	}
	return fhir.SearchType
}

// conditional runs the search of a conditional interaction inside tx and returns
// its matches (at most two: enough to tell one from many). Many is an error.
func (e *Engine) conditional(ctx context.Context, tx store.Tx, rt, query, what string) ([]store.Version, error) {
	q, err := e.conditionQuery(rt, query, what)
	if err != nil {
		return nil, err
	}
	if err := e.restrict(ctx, q, fhir.PermSearch); err != nil {
		return nil, err
	}
	qctx, cancel := e.queryContext(ctx)
	defer cancel()
	res, err := tx.Search(qctx, q)
	if err != nil {
		return nil, e.tooCostly(ctx, qctx, err)
	}
	if len(res.Matches) > 1 {
		return nil, fhir.Errorf(fhir.TooManyMatches, "", "the condition %q matches more than one %s", query, rt)
	}
	return res.Matches, nil
}

// rewriteReferences replaces, everywhere in obj, references to fullUrls of the
// Bundle by the Type/id they were given, and conditional references
// ("Patient?identifier=…") by the one resource they match (none: 400; many: 412).
func (e *Engine) rewriteReferences(ctx context.Context, tx store.Tx, be *bundleEntry, obj any, ids map[string]string) error {
	switch x := obj.(type) {
	case map[string]any:
		for k, v := range x {
			if ref, ok := v.(string); ok && k == "reference" {
				if target, ok := ids[ref]; ok {
					x[k] = target
					continue
				}
				if strings.HasPrefix(ref, "urn:uuid:") || strings.HasPrefix(ref, "urn:oid:") {
					return be.entryError(fhir.Errorf(fhir.Invalid, "", "reference %q is not the fullUrl of any entry of the Bundle", ref))
				}
				if rt, query, ok := strings.Cut(ref, "?"); ok && fhir.Served(rt) {
					found, err := e.conditional(ctx, tx, rt, query, "a conditional reference")
					if err != nil {
						return be.entryError(err)
					}
					if len(found) == 0 {
						return be.entryError(fhir.Errorf(fhir.Invalid, "", "conditional reference %q matches no resource", ref))
					}
					x[k] = rt + "/" + found[0].ID
				}
				continue
			}
			if err := e.rewriteReferences(ctx, tx, be, v, ids); err != nil {
				return err
			}
		}
	case []any:
		for _, v := range x {
			if err := e.rewriteReferences(ctx, tx, be, v, ids); err != nil {
				return err
			}
		}
	}
	return nil
}

// processInTx performs one entry inside tx and fills in its response.
func (e *Engine) processInTx(ctx context.Context, tx store.Tx, be *bundleEntry, now time.Time, opt SearchOptions) error {
	switch be.method {
	case "DELETE":
		ids := []string{be.id}
		if be.query != "" {
			var err error
			if ids, err = e.deleteTargets(ctx, tx, be.rt, be.query, "request.url"); err != nil {
				return err
			}
			if be.ifMatch != 0 && len(ids) > 1 {
				return fhir.Errorf(fhir.PreconditionFailed, "", "ifMatch names one version, but the condition %q matches %d %s", be.query, len(ids), be.rt)
			}
			be.deleted = ids
		}
		be.response = BundleEntry{Response: &EntryResponse{Status: "204 No Content"}}
		for _, id := range ids {
			res, err := e.deleteInTx(ctx, tx, be.rt, id, be.ifMatch, now)
			if err != nil {
				return err
			}
			if res.Version.VersionID > 0 && len(ids) == 1 {
				be.response.Response.Etag = ETag(res.Version.VersionID)
			}
		}
	case "POST":
		if be.resource == nil {
			return nil // a conditional create that matched: response already set
		}
		v, index, err := e.stampCreate(be, now) // prestamp.go
		if err != nil {
			return err
		}
		if err := tx.Put(ctx, v, index); err != nil {
			return err
		}
		be.response = e.writeEntry(v, "201 Created", opt)
	case "PUT":
		res, err := e.putNext(ctx, tx, be.rt, be.id, be.fresh, be.resource, be.checked.order, nil, be.ifMatch, "PUT", now)
		if err != nil {
			return err
		}
		be.response = e.writeEntry(res.Version, statusOf(res), opt)
	case "PATCH":
		res, obj, chk, err := e.patchInTx(ctx, tx, be.rt, be.id, be.patch, be.ifMatch, now)
		if err != nil {
			return err
		}
		be.patched, be.checked = obj, chk
		be.response = e.writeEntry(res.Version, "200 OK", opt)
	case "GET":
		return e.getInTx(ctx, tx, be, opt)
	}
	return nil
}

func statusOf(res Result) string {
	if res.Created {
		return "201 Created"
	}
	return "200 OK"
}

// writeEntry is the response entry of a successful write or read.
func (e *Engine) writeEntry(v store.Version, status string, opt SearchOptions) BundleEntry {
	be := BundleEntry{
		FullURL: e.base + "/" + v.Type + "/" + v.ID,
		Response: &EntryResponse{
			Status:       status,
			Location:     v.Type + "/" + v.ID + "/_history/" + strconv.Itoa(v.VersionID),
			Etag:         ETag(v.VersionID),
			LastModified: formatInstant(v.LastUpdated),
		},
	}
	if !opt.Minimal {
		be.Resource = v.Body
	}
	return be
}

// getInTx answers a GET entry (read, vread or search) inside tx, so that it sees
// the transaction's writes.
func (e *Engine) getInTx(ctx context.Context, tx store.Tx, be *bundleEntry, opt SearchOptions) error {
	if be.id != "" {
		if be.vid != "" {
			return fhir.Errorf(fhir.NotSupported, "", "vread inside a transaction is not supported; use a batch")
		}
		if err := e.mayReadIn(ctx, tx, be.rt, be.id); err != nil {
			return err
		}
		v, err := tx.Read(ctx, be.rt, be.id)
		if err != nil {
			return err
		}
		if v.Deleted {
			return fhir.Errorf(fhir.Gone, "", "%s/%s was deleted", be.rt, be.id)
		}
		be.response = e.writeEntry(v, "200 OK", SearchOptions{})
		be.response.Response.Location = ""
		return nil
	}
	raw, err := ParseQueryString(be.query)
	if err != nil {
		return err
	}
	q, err := e.params.ParseQuery(be.rt, raw, search.ParseOptions{Lenient: opt.Lenient, DefaultCount: e.defCount, MaxCount: e.maxCount, Limits: e.queryLimits})
	if err != nil {
		return err
	}
	if err := e.restrict(ctx, q, fhir.PermSearch); err != nil {
		return err
	}
	res, err := tx.Search(ctx, q)
	if err != nil {
		return err
	}
	sb, err := e.searchBundle(ctx, e.guard(ctx, tx), q, res)
	if err != nil {
		return err
	}
	body, err := json.Marshal(sb)
	if err != nil {
		return fhir.InternalError("bundle", err)
	}
	be.response = BundleEntry{Resource: body, Response: &EntryResponse{Status: "200 OK"}}
	return nil
}

// batch processes every entry on its own.
func (e *Engine) batch(ctx context.Context, entries []*bundleEntry, opt SearchOptions) *Bundle {
	b := e.newBundle("batch-response")
	for _, be := range entries {
		if be.response.Response == nil {
			if err := e.batchEntry(ctx, be, opt); err != nil {
				be.response = errorEntry(err)
				rec := audit.Record{Interaction: "batch", Action: "E", Outcome: fhir.AsError(err)}
				if be.id != "" {
					rec.Entities = []string{be.rt + "/" + be.id}
				}
				if aerr := e.Audit(ctx, rec); aerr != nil {
					be.response = errorEntry(aerr)
				}
			}
		}
		b.Entry = append(b.Entry, be.response)
	}
	return b
}

func (e *Engine) batchEntry(ctx context.Context, be *bundleEntry, opt SearchOptions) error {
	if err := checkType(be.rt, interactionOf(be)); err != nil {
		return be.entryError(err)
	}
	if _, err := e.conditions(ctx, be.rt, fhir.PermissionOf(interactionOf(be))); err != nil {
		return be.entryError(err)
	}
	if be.method == "GET" && be.vid != "" {
		v, err := e.VRead(ctx, be.rt, be.id, be.vid)
		if err != nil {
			return be.entryError(err)
		}
		be.response = e.writeEntry(v, "200 OK", SearchOptions{})
		be.response.Response.Location = ""
		return nil
	}
	if be.method == "POST" {
		be.id = newID()
	}
	err := e.store.Write(ctx, func(tx store.Tx) error {
		if err := e.resolveTarget(ctx, tx, be, map[string]string{}, opt); err != nil {
			return be.entryError(err)
		}
		if be.resource != nil {
			if err := e.rewriteReferences(ctx, tx, be, be.resource, nil); err != nil {
				return err
			}
		}
		if err := e.processInTx(ctx, tx, be, e.now(), opt); err != nil {
			return be.entryError(err)
		}
		if err := e.finishEntry(ctx, tx, be); err != nil {
			return err
		}
		return e.auditInTx(ctx, tx, entriesRecord("batch", []*bundleEntry{be}))
	})
	return err
}

// entriesRecord describes what the successful entries of a transaction or
// batch (or one batch entry) wrote or read, for the audit trail.
func entriesRecord(interaction string, entries []*bundleEntry) audit.Record {
	rec := audit.Record{Interaction: interaction, Action: "E"}
	for _, be := range entries {
		ok := be.response.Response != nil && strings.HasPrefix(be.response.Response.Status, "2")
		if ok {
			for _, id := range be.deleted {
				rec.Entities = append(rec.Entities, be.rt+"/"+id)
			}
		}
		if be.id == "" || !ok {
			continue // a search, or an entry that failed (recorded on its own)
		}
		ref := be.rt + "/" + be.id
		if loc := be.response.Response.Location; loc != "" {
			ref = loc
		} else if be.vid != "" {
			ref += "/_history/" + be.vid
		}
		rec.Entities = append(rec.Entities, ref)
		if rec.Patient == "" && be.rt == "Patient" {
			rec.Patient = "Patient/" + be.id
		}
	}
	return rec
}
