package cld

import (
	"context"
	"sort"
	"strings"

	"crs/fhir"
	"crs/mapping"
)

// group is what one person (or one held row) writes: it is stored whole or
// not at all.
type group struct {
	lines   []int           // the rows behind it
	entries []mapping.Entry // the writes
	kinds   []string        // per entry: resource, provenance or task
	states  []*state        // per entry: the resource state (resources only)
	held    []mapping.Held
	same    int // resources its rows named that need no change
}

// personGroup turns a person's changed resources into writes, each with its
// Provenance.
func (im *importer) personGroup(p *person) group {
	var g group
	lines := map[int]bool{}
	for _, s := range append([]*state{p.patient}, p.episodes...) {
		src := p.sources[s]
		if len(src) == 0 {
			continue
		}
		for _, r := range src {
			lines[r.Line] = true
		}
		if !s.changed() {
			g.same++
			continue
		}
		e := mapping.Entry{Resource: s.obj}
		if s.id == "" {
			e.Method, e.URL, e.FullURL, e.IfNoneExist = "POST", s.typ, s.fullURL, s.cond
		} else {
			s.obj["id"] = s.id
			e.Method, e.URL, e.IfMatch = "PUT", s.typ+"/"+s.id, s.version
		}
		g.entries = append(g.entries, e)
		g.kinds = append(g.kinds, "resource")
		g.states = append(g.states, s)
		g.entries = append(g.entries, mapping.Entry{Method: "POST", URL: "Provenance", Resource: im.run.Provenance(s.ref(), src, s.id == "")})
		g.kinds = append(g.kinds, "provenance")
		g.states = append(g.states, nil)
	}
	for l := range lines {
		g.lines = append(g.lines, l)
	}
	sort.Ints(g.lines)
	return g
}

// commit writes the groups in one transaction; when that fails, each group on
// its own, so that one person's problem rejects only that person's rows.
func (im *importer) commit(ctx context.Context, groups []group) error {
	for i := range groups {
		if len(groups[i].kinds) == 0 {
			for range groups[i].entries {
				groups[i].kinds = append(groups[i].kinds, "task")
				groups[i].states = append(groups[i].states, nil)
			}
		}
	}
	if im.opt.DryRun {
		for _, g := range groups {
			im.count(g, nil)
		}
		return nil
	}
	var all []mapping.Entry
	for _, g := range groups {
		all = append(all, g.entries...)
	}
	if len(all) == 0 {
		for _, g := range groups {
			im.count(g, nil)
		}
		return nil
	}
	res, err := im.door.Transaction(ctx, all)
	if err == nil {
		for _, g := range groups {
			im.count(g, res[:len(g.entries)])
			res = res[len(g.entries):]
		}
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for _, g := range groups {
		if len(g.entries) == 0 {
			im.count(g, nil)
			continue
		}
		res, err := im.door.Transaction(ctx, g.entries)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			reason := "not stored: " + describe(err)
			for _, l := range g.lines {
				im.rep.Add(l, "", "rejected", reason)
			}
			continue
		}
		im.count(g, res)
	}
	return nil
}

// describe is an error's message without the operation prefixes.
func describe(err error) string {
	fe := fhir.AsError(err)
	var parts []string
	for _, is := range fe.Issues {
		parts = append(parts, is.Diagnostics)
	}
	if len(parts) == 0 {
		return err.Error()
	}
	return strings.Join(parts, "; ")
}

// count adds a stored group to the summary (res nil: a dry run, counted as if
// stored).
func (im *importer) count(g group, res []mapping.EntryResult) {
	im.rep.Unchanged += g.same
	for _, h := range g.held {
		im.rep.Add(h.Line, "", "held", h.Problem)
	}
	for i, kind := range g.kinds {
		if kind != "resource" {
			continue
		}
		e := g.entries[i]
		if res == nil {
			if e.Method == "POST" {
				im.rep.Created++
			} else {
				im.rep.Updated++
			}
			continue
		}
		r := res[i]
		_, vid := versionOfLocation(r.Location)
		switch {
		case strings.HasPrefix(r.Status, "201"):
			im.rep.Created++
		case e.Method == "POST", e.IfMatch > 0 && vid == e.IfMatch:
			im.rep.Unchanged++
		default:
			im.rep.Updated++
		}
	}
}

func versionOfLocation(loc string) (string, int) {
	ref, vid, _ := strings.Cut(loc, "/_history/")
	n := 0
	for _, c := range vid {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return ref, n
}
