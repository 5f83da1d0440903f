package engine

import (
	"context"
	"errors"
	"time"

	"crs/fhir"
)

// DefaultQueryTimeout is how long a search may work in the store before it
// stops with TooCostly (Config.QueryTimeout).
const DefaultQueryTimeout = 5 * time.Second

// queryContext bounds a search's store work by the query timeout. The
// interaction's own context (its audit record) is not bounded by it.
func (e *Engine) queryContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if e.queryTimeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, e.queryTimeout)
}

// tooCostly turns the failure of a search that ran past the query timeout into
// a TooCostly error that says so; any other error is returned as it is. ctx is
// the interaction's context: a client that went away is not a costly query.
func (e *Engine) tooCostly(ctx, qctx context.Context, err error) error {
	if err == nil || ctx.Err() != nil || !errors.Is(qctx.Err(), context.DeadlineExceeded) {
		return err
	}
	return fhir.Errorf(fhir.TooCostly, "", "the search was stopped after the server's query timeout of %s: it is too costly as asked; add a more selective parameter, or drop _sort, _include or _total", e.queryTimeout)
}
