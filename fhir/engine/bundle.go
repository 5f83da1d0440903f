package engine

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"time"

	"crs/fhir"
	"crs/fhir/search"
	"crs/fhir/store"
)

// Bundle is a searchset or history Bundle. It marshals to FHIR JSON with the
// stored resource bytes embedded as they are, never re-encoded.
type Bundle struct {
	ResourceType string        `json:"resourceType"`
	ID           string        `json:"id"`
	Meta         *BundleMeta   `json:"meta,omitempty"`
	Type         string        `json:"type"`
	Total        *int          `json:"total,omitempty"`
	Link         []BundleLink  `json:"link,omitempty"`
	Entry        []BundleEntry `json:"entry,omitempty"`
	// Plan is how the store found a search's page, for the X-Query-Plan debug
	// header; set only when the engine is configured with ExplainPlans.
	Plan string `json:"-"`
}

// BundleMeta is Bundle.meta.
type BundleMeta struct {
	LastUpdated string `json:"lastUpdated"`
}

// BundleLink is Bundle.link.
type BundleLink struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

// BundleEntry is Bundle.entry.
type BundleEntry struct {
	FullURL  string          `json:"fullUrl,omitempty"`
	Resource json.RawMessage `json:"resource,omitempty"`
	Search   *EntrySearch    `json:"search,omitempty"`
	Request  *EntryRequest   `json:"request,omitempty"`
	Response *EntryResponse  `json:"response,omitempty"`
}

// EntrySearch is Bundle.entry.search.
type EntrySearch struct {
	Mode string `json:"mode"`
}

// EntryRequest is Bundle.entry.request.
type EntryRequest struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}

// EntryResponse is Bundle.entry.response.
type EntryResponse struct {
	Status       string          `json:"status"`
	Location     string          `json:"location,omitempty"`
	Etag         string          `json:"etag,omitempty"`
	LastModified string          `json:"lastModified,omitempty"`
	Outcome      json.RawMessage `json:"outcome,omitempty"`
}

// ParseQueryString splits a URL query string into name/value pairs in their order,
// unescaping each. A malformed escape is an Invalid error.
func ParseQueryString(qs string) ([]fhir.RawParam, error) {
	var out []fhir.RawParam
	for _, part := range strings.Split(qs, "&") {
		if part == "" {
			continue
		}
		name, value, _ := strings.Cut(part, "=")
		n, err := url.QueryUnescape(name)
		if err != nil {
			return nil, fhir.Errorf(fhir.Invalid, "", "malformed query parameter name %q", name)
		}
		v, err := url.QueryUnescape(value)
		if err != nil {
			return nil, fhir.Errorf(fhir.Invalid, n, "malformed value of query parameter %q", n)
		}
		out = append(out, fhir.RawParam{Name: n, Value: v})
	}
	return out, nil
}

// SearchOptions are the request options of a search besides its parameters.
type SearchOptions struct {
	Lenient bool // Prefer: handling=lenient: unknown parameters are ignored
	Minimal bool // Prefer: return=minimal: bundle responses carry no resources
}

// Search runs a type-level search and returns a searchset Bundle.
func (e *Engine) Search(ctx context.Context, rt string, params []fhir.RawParam, opt SearchOptions) (b *Bundle, err error) {
	ctx, ia := e.begin(ctx, "search-type", "E", "", "")
	if ia != nil {
		ia.rec.Query = rawQuery(params)
	}
	defer func() { b, err = endBundle(b, e.end(ctx, ia, err)) }()
	return e.search(ctx, rt, params, opt, nil)
}

// endBundle drops the answer of an interaction that ends in an error (its
// AuditEvent could not be recorded).
func endBundle(b *Bundle, err error) (*Bundle, error) {
	if err != nil {
		return nil, err
	}
	return b, nil
}

// SearchCompartment runs a search of type rt inside the compartment of
// compType/compID, e.g. GET /Patient/123/CarePlan.
func (e *Engine) SearchCompartment(ctx context.Context, compType, compID, rt string, params []fhir.RawParam, opt SearchOptions) (b *Bundle, err error) {
	ctx, ia := e.begin(ctx, "search-type", "E", compType, compID)
	if ia != nil {
		ia.rec.Query = rawQuery(params)
	}
	defer func() { b, err = endBundle(b, e.end(ctx, ia, err)) }()
	if err := checkID(compID); err != nil {
		return nil, err
	}
	c, ok := compartments[compType]
	if !ok {
		return nil, fhir.Errorf(fhir.NotSupported, "", "there is no %s compartment", compType)
	}
	ps, ok := c[rt]
	if !ok {
		return nil, fhir.Errorf(fhir.NotSupported, "", "%s resources are not in the %s compartment", rt, compType)
	}
	return e.search(ctx, rt, params, opt, &fhir.Compartment{Type: compType, ID: compID, Params: ps})
}

func (e *Engine) search(ctx context.Context, rt string, params []fhir.RawParam, opt SearchOptions, comp *fhir.Compartment) (*Bundle, error) {
	if err := checkType(rt, fhir.SearchType); err != nil {
		return nil, err
	}
	q, err := e.params.ParseQuery(rt, params, search.ParseOptions{Lenient: opt.Lenient, DefaultCount: e.defCount, MaxCount: e.maxCount, Limits: e.queryLimits})
	if err != nil {
		return nil, fhir.WithOp("search", err)
	}
	if (q.Summary == "true" || q.Summary == "text") && e.elements == nil {
		return nil, fhir.Errorf(fhir.NotSupported, "_summary", "_summary=%s is not supported by this server", q.Summary)
	}
	q.Compartment = comp
	if q.Total == "" {
		// Not asked: a total when it is cheap (below the limit), none past it;
		// _summary=count asks for nothing else, so it is always counted.
		q.Total = fhir.TotalAccurate
		if q.Summary != "count" {
			q.TotalLimit = e.totalLimit
		}
	}
	if err := e.restrict(ctx, q, fhir.PermSearch); err != nil {
		return nil, fhir.WithOp("search", err)
	}
	if rt == "AuditEvent" {
		e.materialiseNow(ctx)
	}
	qctx, cancel := e.queryContext(ctx)
	defer cancel()
	res, err := e.store.Search(qctx, q)
	if err != nil {
		return nil, fhir.WithOp("search", e.tooCostly(ctx, qctx, err))
	}
	b, err := e.searchBundle(qctx, e.guard(qctx, e.store), q, res)
	if err != nil {
		return nil, fhir.WithOp("search", e.tooCostly(ctx, qctx, err))
	}
	if e.explainPlans {
		b.Plan = res.Plan
	}
	return b, nil
}

// searchBundle renders one page of search results, with its includes, as a
// searchset Bundle.
func (e *Engine) searchBundle(ctx context.Context, r resolver, q *fhir.Query, res *store.SearchResult) (*Bundle, error) {
	b := e.newBundle("searchset")
	if res.Total >= 0 {
		t := res.Total
		b.Total = &t
	}
	typeURL := e.base + "/" + q.Type
	if c := q.Compartment; c != nil {
		typeURL = e.base + "/" + c.Type + "/" + c.ID + "/" + q.Type
	}
	b.Link = append(b.Link, BundleLink{Relation: "self", URL: linkURL(typeURL, search.FormatQuery(q, q.Cursor))})
	if res.Next != "" {
		b.Link = append(b.Link, BundleLink{Relation: "next", URL: linkURL(typeURL, search.FormatQuery(q, res.Next))})
	}
	included, err := e.includes(ctx, r, q, res.Matches)
	if err != nil {
		return nil, err
	}
	for i, v := range append(res.Matches, included...) {
		body, err := e.shape(v, q)
		if err != nil {
			return nil, err
		}
		mode := "match"
		if i >= len(res.Matches) {
			mode = "include"
		}
		b.Entry = append(b.Entry, BundleEntry{
			FullURL:  e.base + "/" + v.Type + "/" + v.ID,
			Resource: body,
			Search:   &EntrySearch{Mode: mode},
		})
	}
	return b, nil
}

func linkURL(base, qs string) string {
	if qs == "" {
		return base
	}
	return base + "?" + qs
}

func (e *Engine) newBundle(typ string) *Bundle {
	return &Bundle{
		ResourceType: "Bundle", ID: newID(), Type: typ,
		Meta: &BundleMeta{LastUpdated: formatInstant(e.now())},
	}
}

// History returns a history Bundle for one resource (rt and id set), one type (rt
// set) or the whole system (both empty). Parameters: _since, _count, _cursor.
func (e *Engine) History(ctx context.Context, rt, id string, params []fhir.RawParam) (b *Bundle, err error) {
	level := "history-system"
	switch {
	case id != "":
		level = "history-instance"
	case rt != "":
		level = "history-type"
	}
	ctx, ia := e.begin(ctx, level, "R", rt, id)
	defer func() { b, err = endBundle(b, e.end(ctx, ia, err)) }()
	switch {
	case id != "":
		if err := checkType(rt, fhir.HistoryInstance); err != nil {
			return nil, err
		}
		if err := checkID(id); err != nil {
			return nil, err
		}
		if err := e.mayRead(ctx, rt, id); err != nil {
			return nil, fhir.WithOp("history", err)
		}
	case rt != "":
		if err := checkType(rt, fhir.HistoryType); err != nil {
			return nil, err
		}
		if err := e.unbounded(ctx, rt); err != nil {
			return nil, fhir.WithOp("history", err)
		}
	default:
		for _, t := range fhir.ServedTypes() {
			if err := e.unbounded(ctx, t); err != nil {
				return nil, fhir.WithOp("history", err)
			}
		}
	}
	if rt == "" || rt == "AuditEvent" {
		e.materialiseNow(ctx)
	}
	hq := store.HistoryQuery{Type: rt, ID: id, Count: e.defCount}
	var keep []fhir.RawParam
	for _, p := range params {
		switch p.Name {
		case "_since":
			t, err := parseInstant(p.Value)
			if err != nil {
				return nil, fhir.Errorf(fhir.Invalid, "_since", "_since must be an instant such as 2026-11-22T10:00:00Z: %q", p.Value)
			}
			hq.Since = t
			keep = append(keep, p)
		case "_count":
			n, err := strconv.Atoi(p.Value)
			if err != nil || n < 0 {
				return nil, fhir.Errorf(fhir.Invalid, "_count", "_count must be a non-negative integer: %q", p.Value)
			}
			hq.Count = min(max(n, 1), e.maxCount)
			keep = append(keep, fhir.RawParam{Name: "_count", Value: strconv.Itoa(hq.Count)})
		case "_cursor":
			hq.Cursor = p.Value
		default:
			return nil, fhir.Errorf(fhir.Invalid, p.Name, "history does not support the parameter %q (supported: _since, _count)", p.Name)
		}
	}
	res, err := e.store.History(ctx, hq)
	if err != nil {
		return nil, fhir.WithOp("history", err)
	}
	path := e.base
	if rt != "" {
		path += "/" + rt
	}
	if id != "" {
		path += "/" + id
	}
	path += "/_history"
	b = e.newBundle("history")
	t := res.Total
	b.Total = &t
	b.Link = append(b.Link, BundleLink{Relation: "self", URL: linkURL(path, formatRaw(keep, hq.Cursor))})
	if res.Next != "" {
		b.Link = append(b.Link, BundleLink{Relation: "next", URL: linkURL(path, formatRaw(keep, res.Next))})
	}
	for _, v := range res.Versions {
		if isOutboxRecord(v.Type) { // the subscriptions' bookkeeping is not a resource (outbox.go)
			continue
		}
		entry := BundleEntry{
			FullURL: e.base + "/" + v.Type + "/" + v.ID,
			Request: &EntryRequest{Method: v.Method, URL: v.Type + "/" + v.ID},
			Response: &EntryResponse{
				Status: historyStatus(v), Etag: ETag(v.VersionID), LastModified: formatInstant(v.LastUpdated),
			},
		}
		if v.Method == "POST" {
			entry.Request.URL = v.Type
		}
		if !v.Deleted {
			entry.Resource = v.Body
		}
		b.Entry = append(b.Entry, entry)
	}
	return b, nil
}

func historyStatus(v store.Version) string {
	switch {
	case v.Deleted:
		return "204 No Content"
	case v.VersionID == 1:
		return "201 Created"
	default:
		return "200 OK"
	}
}

func formatRaw(params []fhir.RawParam, cursor string) string {
	vals := make([]string, 0, len(params)+1)
	for _, p := range params {
		vals = append(vals, url.QueryEscape(p.Name)+"="+url.QueryEscape(p.Value))
	}
	if cursor != "" {
		vals = append(vals, "_cursor="+url.QueryEscape(cursor))
	}
	return strings.Join(vals, "&")
}

// ETag formats a version id as a weak ETag: W/"3".
func ETag(versionID int) string { return `W/"` + strconv.Itoa(versionID) + `"` }

// parseInstant parses a FHIR instant or dateTime with time zone (or a date, taken
// as midnight UTC).
func parseInstant(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04Z07:00", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fhir.Errorf(fhir.Invalid, "", "invalid instant %q", s)
}
