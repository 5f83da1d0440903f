// Package mapping brings partner records into the shared record: council
// Client Level Data (mapping/cld), and the shared parts every importer uses —
// the CSV reader, identity matching by NHS number and linked local
// identifiers, Provenance, records held for review as Tasks, and the report of
// every row. Importers never touch the store: they go through a Door, which is
// the engine with the importing organisation's principal (EngineDoor) or a
// running crs over HTTP, so every import is policed and audited like any other
// client.
package mapping

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"crs/auth"
	"crs/fhir"
	"crs/fhir/engine"
)

// Current is a stored resource as a search found it.
type Current struct {
	Obj     fhir.Object
	ID      string
	Version int
}

// Entry is one write of an import's transaction Bundle.
type Entry struct {
	FullURL     string // urn:uuid:… so that other entries can refer to it
	Method      string // POST or PUT
	URL         string // Type, Type/id
	IfNoneExist string // conditional create
	IfMatch     int    // the version a PUT replaces (optimistic locking)
	Resource    fhir.Object
}

// EntryResult is the outcome of one entry.
type EntryResult struct {
	Status   string // "201 Created", "200 OK"
	Location string // Type/id/_history/n
}

// Door is how an importer reads and writes: through the engine, never the store.
type Door interface {
	// Search runs a type-level search (a query string) and returns the matches.
	Search(ctx context.Context, rt, query string) ([]Current, error)
	// Transaction writes entries atomically: all or nothing.
	Transaction(ctx context.Context, entries []Entry) ([]EntryResult, error)
}

// EngineDoor is a Door into an in-process engine as one principal: the
// importing organisation with its role, as the HTTP layer would set it from a
// token.
type EngineDoor struct {
	Engine    *engine.Engine
	Principal *auth.Principal // nil: no principal (development mode, no policy)
}

// Context is ctx with the door's principal (when it has one).
func (d *EngineDoor) Context(ctx context.Context) context.Context {
	if d.Principal == nil {
		return ctx
	}
	return auth.WithPrincipal(ctx, d.Principal)
}

// Search implements Door.
func (d *EngineDoor) Search(ctx context.Context, rt, query string) ([]Current, error) {
	params, err := engine.ParseQueryString(query)
	if err != nil {
		return nil, err
	}
	b, err := d.Engine.Search(d.Context(ctx), rt, params, engine.SearchOptions{})
	if err != nil {
		return nil, err
	}
	var out []Current
	for _, e := range b.Entry {
		if e.Search != nil && e.Search.Mode != "match" {
			continue
		}
		c, err := currentOf(e.Resource)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(b.Link) > 0 {
		for _, l := range b.Link {
			if l.Relation == "next" {
				return nil, fmt.Errorf("search %s?%s matched more than one page: too many candidates to match safely", rt, query)
			}
		}
	}
	return out, nil
}

func currentOf(body []byte) (Current, error) {
	obj, err := fhir.Parse(body, fhir.Limits{})
	if err != nil {
		return Current{}, err
	}
	c := Current{Obj: obj, ID: fhir.ID(obj)}
	if meta, ok := obj["meta"].(map[string]any); ok {
		if v, ok := meta["versionId"].(string); ok {
			c.Version, _ = strconv.Atoi(v)
		}
	}
	return c, nil
}

// Transaction implements Door.
func (d *EngineDoor) Transaction(ctx context.Context, entries []Entry) ([]EntryResult, error) {
	// The tree as it is: the engine copies and checks it, with no JSON
	// encoded and parsed back on the way.
	b, err := d.Engine.BundleTree(d.Context(ctx), transactionTree(entries), engine.SearchOptions{Minimal: true})
	if err != nil {
		return nil, err
	}
	out := make([]EntryResult, len(b.Entry))
	for i, e := range b.Entry {
		if e.Response != nil {
			out[i] = EntryResult{Status: e.Response.Status, Location: e.Response.Location}
		}
	}
	return out, nil
}

// TransactionBundle encodes entries as a FHIR transaction Bundle.
func TransactionBundle(entries []Entry) ([]byte, error) {
	return json.Marshal(transactionTree(entries))
}

// TransactionTree is entries as a FHIR transaction Bundle tree; the
// resources are shared, not copied (Engine.TransactionWith copies it).
func TransactionTree(entries []Entry) fhir.Object { return transactionTree(entries) }

// transactionTree is entries as a FHIR transaction Bundle tree; the resources
// are shared, not copied.
func transactionTree(entries []Entry) fhir.Object {
	list := make([]any, 0, len(entries))
	for _, e := range entries {
		req := map[string]any{"method": e.Method, "url": e.URL}
		if e.IfNoneExist != "" {
			req["ifNoneExist"] = e.IfNoneExist
		}
		if e.IfMatch > 0 {
			req["ifMatch"] = `W/"` + strconv.Itoa(e.IfMatch) + `"`
		}
		m := map[string]any{"resource": e.Resource, "request": req}
		if e.FullURL != "" {
			m["fullUrl"] = e.FullURL
		}
		list = append(list, m)
	}
	return fhir.Object{"resourceType": "Bundle", "type": "transaction", "entry": list}
}
