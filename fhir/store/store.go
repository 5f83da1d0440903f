// Package store defines the interface every storage backend of crs implements: it
// keeps every version of every resource, with the search values the engine
// extracted from it, and answers reads, searches and history. The conformance
// suite in package storetest holds every promise made here.
package store

import (
	"context"
	"time"

	"crs/fhir"
)

// Version is one stored version of a resource.
type Version struct {
	Type        string    // resource type
	ID          string    // logical id
	VersionID   int       // 1 for the first version, then 2, 3, ...
	LastUpdated time.Time // set by the engine; also in Body's meta.lastUpdated
	Deleted     bool      // a delete tombstone; Body is nil
	Method      string    // the HTTP method that made it: POST, PUT, PATCH or DELETE
	Body        []byte    // the resource JSON exactly as it is served (id and meta set)
}

// SearchResult is one page of matches of a search.
type SearchResult struct {
	Matches []Version // current versions, never tombstones, in the query's sort order
	Total   int       // number of matches over all pages; -1 when not counted (Total none, or TotalLimit reached)
	Next    string    // opaque cursor for the next page; "" on the last page
	Plan    string    // how the backend found the page, for the X-Query-Plan debug header; "" when it does not say
}

// HistoryQuery selects versions for a history interaction. Empty Type means all
// types (system history); empty ID means all resources of Type.
type HistoryQuery struct {
	Type   string
	ID     string
	Since  time.Time // only versions with LastUpdated >= Since; zero for all
	Count  int       // page size (> 0)
	Cursor string    // opaque continuation, "" for the first page
}

// HistoryResult is one page of versions, newest first.
type HistoryResult struct {
	Versions []Version
	Total    int    // number of versions over all pages
	Next     string // opaque cursor for the next page; "" on the last page
}

// Reader reads current versions and searches. A Tx is a Reader that also sees the
// writes made earlier in the same transaction.
type Reader interface {
	// Read returns the current version of a resource: a tombstone (Deleted) when it
	// was deleted. Error kind NotFound when it never existed.
	Read(ctx context.Context, typ, id string) (Version, error)
	// Search returns one page of current, non-deleted resources of q.Type matching
	// every parameter of q. Error kind Invalid for a cursor it did not issue,
	// NotSupported for a parameter or modifier it cannot evaluate.
	Search(ctx context.Context, q *fhir.Query) (*SearchResult, error)
}

// Tx is the atomic unit of writes. Everything put through one Tx becomes visible
// together when the function given to Store.Write returns nil, and nothing does
// when it returns an error.
type Tx interface {
	Reader
	// Put stores v as the newest version of its resource, replacing the search
	// values of the resource with index (ignored for tombstones). v.VersionID must
	// be one more than the current version (1 for a new resource): otherwise error
	// kind Conflict, and nothing is stored.
	Put(ctx context.Context, v Version, index []fhir.IndexValue) error
	// Last returns the version of type typ written last, this transaction's
	// writes included (the audit trail's hash chain follows it). Error kind
	// NotFound when there is none.
	Last(ctx context.Context, typ string) (Version, error)
}

// Store is a storage backend.
type Store interface {
	Reader
	// VRead returns one version of a resource. Error kind NotFound when the resource
	// or that version does not exist.
	VRead(ctx context.Context, typ, id string, versionID int) (Version, error)
	// History returns versions newest first (ties broken by write order).
	History(ctx context.Context, q HistoryQuery) (*HistoryResult, error)
	// Write runs fn in one atomic, isolated transaction: its writes are durable when
	// Write returns nil, and none of them is visible to anyone before that. When fn
	// returns an error, Write returns that error and stores nothing. Transactions
	// are serializable: fn sees no concurrent writes.
	Write(ctx context.Context, fn func(tx Tx) error) error
	// Ready reports whether the store can serve requests (Unavailable otherwise).
	Ready(ctx context.Context) error
	// Close releases the store.
	Close() error
}
