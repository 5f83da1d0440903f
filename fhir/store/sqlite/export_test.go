package sqlite

// SetWalkFrom sets the driving set size from which s walks a page rather than
// building the set, so that small test data takes the walk and its handover.
func SetWalkFrom(s *Store, n int) { s.walkFrom = n }
