package sqlite

import (
	"slices"

	"crs/fhir"
)

// plainFirst orders the saturated parameters of driverCount's second sample
// (indexes into params) with the plain ones first, each group in query order.
// The sample counts each parameter only up to one row past the fewest found
// so far, so the order decides how far the later ones are counted, not
// which drives (but for a tie, which now goes to the plain parameter, as
// when every set is huge). A chain or _has counts its inner query's rows,
// typically a large set (every active Goal of the region), and counted
// first it ran to the full larger sample (20,000 index rows) where a plain
// parameter (a provider's 3,572 people) bounds it to one row past its own.
// "People with active goals" at 1M spent a quarter of its CPU in that
// sample.
func plainFirst(params []fhir.Param, saturated []int) []int {
	out := slices.Clone(saturated)
	slices.SortStableFunc(out, func(a, b int) int {
		pa, pb := plain(params[a]), plain(params[b])
		switch {
		case pa == pb:
			return 0
		case pa:
			return -1
		}
		return 1
	})
	return out
}
