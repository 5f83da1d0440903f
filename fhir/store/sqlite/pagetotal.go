package sqlite

import (
	"context"

	"crs/fhir"
	"crs/fhir/store"
)

// The total of a first page in row id order. A page without _sort holds the
// first matches in row id order, so every match up to its last row is on the
// page: Bundle.total is the page's length plus the matches after its last
// row. Counting only those (the driving parameter's index rows seek past that
// row when they are in row id order) saves reading again every row the page
// walked; and a page that already holds the total limit's number of matches
// needs no count at all (a provider's people in a locality, a caseload's
// 500-row pages).

// firstPageTotal counts q's matches for the first page res of an unsorted
// search that has a next page (res.Next set), bounded by q.TotalLimit as
// every total is; fb is the driving-set plan's FROM and WHERE.
func firstPageTotal(ctx context.Context, db querier, pl *planner, q *fhir.Query, fb *builder, res *store.SearchResult) (int, error) {
	n := len(res.Matches)
	if q.TotalLimit > 0 && n+1 >= q.TotalLimit {
		// The page and the match after it (there is a next page) reach the
		// limit: the total is "at least the limit", which limitTotal drops.
		return n + 1, nil
	}
	c, _, err := decodeCursor(res.Next, nil)
	if err != nil {
		return 0, err
	}
	limit := 0
	if q.TotalLimit > 0 {
		limit = q.TotalLimit - n
	}
	after, streamed, err := boundedTotalAfter(ctx, db, pl, q, c.RID, limit)
	if err != nil {
		return 0, err
	}
	if !streamed {
		var cb builder
		cb.add("SELECT COUNT(*) FROM (SELECT 1"+fb.sql.String()+" AND c.rid > ?", append(append([]any{}, fb.args...), c.RID)...)
		if limit > 0 {
			cb.add(" LIMIT ?", limit)
		}
		cb.add(")")
		if err := db.QueryRowContext(ctx, cb.sql.String(), cb.args...).Scan(&after); err != nil {
			return 0, fhir.InternalError("search", err)
		}
	}
	return n + after, nil
}
