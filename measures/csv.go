package measures

import (
	"encoding/csv"
	"io"
	"sort"
	"strconv"
)

// csvHeader is the first line of the measures CSV.
var csvHeader = []string{"measure", "group", "period_start", "period_end", "stratifier", "stratum_code", "stratum", "initial_population", "denominator", "numerator", "measure_population", "score", "unit"}

// WriteCSV writes the figures of evaluated Measures as CSV, one line per group
// and per stratum, in the order of ids: the same figures as the MeasureReports.
func WriteCSV(w io.Writer, ids []string, results map[string]*Result) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	for _, id := range ids {
		res := results[id]
		if res == nil {
			continue
		}
		for _, g := range res.Groups {
			unit := rules[id+"#"+g.ID].unit
			line := func(strat, code, label string, f *Figures) error {
				count := func(c string) string {
					if n, ok := f.Counts[c]; ok {
						return strconv.Itoa(n)
					}
					switch {
					case res.Scoring == "proportion" && (c == "denominator" || c == "numerator"),
						res.Scoring == "continuous-variable" && c == "measure-population":
						return "0"
					}
					return ""
				}
				score := ""
				if f.Score != nil {
					score = strconv.FormatFloat(*f.Score, 'f', -1, 64)
				}
				return cw.Write([]string{id, g.ID, res.Request.PeriodText[0], res.Request.PeriodText[1], strat, code, label,
					count("initial-population"), count("denominator"), count("numerator"), count("measure-population"), score, unit})
			}
			if err := line("", "", "all", g.Figures); err != nil {
				return err
			}
			for _, name := range g.Stratifier {
				vals := make([]string, 0, len(g.Strata[name]))
				for v := range g.Strata[name] {
					vals = append(vals, v)
				}
				sort.Strings(vals)
				for _, v := range vals {
					if err := line(name, v, res.StratumLabel(name, v), g.Strata[name][v]); err != nil {
						return err
					}
				}
			}
		}
	}
	cw.Flush()
	return cw.Error()
}
