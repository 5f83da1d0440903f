package mapping

import (
	"context"
	"net/url"
	"sort"
	"strings"

	"crs/fhir"
	"crs/fhir/engine"
)

// State is a resource as stored (old, nil when new) and as it is to be.
type State struct {
	Type, ID string
	Version  int
	Old      []byte      // the stored content (no id, no meta), nil when new
	Obj      fhir.Object // the content to be
	FullURL  string      // urn:uuid of a new resource
	Cond     string      // conditional create query of a new resource
}

// Ref is how other entries of the same transaction refer to the resource.
func (s *State) Ref() string {
	if s.ID != "" {
		return s.Type + "/" + s.ID
	}
	return s.FullURL
}

// Changed reports whether the content to be differs from what is stored.
func (s *State) Changed() bool {
	if s.Old == nil {
		return true
	}
	now, _ := fhir.Marshal(StripMeta(s.Obj))
	return string(now) != string(s.Old)
}

// StripMeta is obj without its id and meta (the server-owned parts).
func StripMeta(obj fhir.Object) fhir.Object {
	cp := make(fhir.Object, len(obj))
	for k, v := range obj {
		if k != "meta" && k != "id" {
			cp[k] = v
		}
	}
	return cp
}

func marshalContent(obj fhir.Object) ([]byte, error) { return fhir.Marshal(StripMeta(obj)) }

// NewState is the state of a stored resource, to be changed in place.
func NewState(c Current, typ string) *State {
	old, _ := marshalContent(c.Obj)
	return &State{Type: typ, ID: c.ID, Version: c.Version, Old: old, Obj: c.Obj}
}

// SearchChunk bounds the values of one OR-list search (a batch's
// identifiers: fewer searches, each counted and audited once).
const SearchChunk = 100

// OrList is a token OR-list of system|value pairs, escaped for a query string.
func OrList(system string, values []string) string {
	parts := make([]string, len(values))
	for i, v := range values {
		parts[i] = url.QueryEscape(system + "|" + tokenEscaper.Replace(v))
	}
	return strings.Join(parts, ",")
}

// EscapeValue escapes a search value's own commas, bars, dollars and
// backslashes (the FHIR search escapes), so that it is one value, or one part
// of a system|value pair, of an OR list.
func EscapeValue(v string) string { return tokenEscaper.Replace(v) }

// tokenEscaper escapes a token search value's separators; built once (a
// visit row's conditional create made one each, 2% of its CPU; an ADT
// message's Patient look-up two, 9% of the bytes it allocated).
var tokenEscaper = strings.NewReplacer(`\`, `\\`, `,`, `\,`, `|`, `\|`, `$`, `\$`)

// Identifiers returns the values of obj's identifiers with system.
func Identifiers(obj fhir.Object, system string) []string {
	var out []string
	list, _ := obj["identifier"].([]any)
	for _, x := range list {
		m, _ := x.(map[string]any)
		if s, _ := m["system"].(string); s == system {
			if v, _ := m["value"].(string); v != "" {
				out = append(out, v)
			}
		}
	}
	return out
}

// HasIdentifier reports whether obj has the identifier system|value.
func HasIdentifier(obj fhir.Object, system, value string) bool {
	for _, v := range Identifiers(obj, system) {
		if v == value {
			return true
		}
	}
	return false
}

// AddIdentifier adds the identifier system|value to obj unless it is there.
func AddIdentifier(obj fhir.Object, system, value string) {
	if HasIdentifier(obj, system, value) {
		return
	}
	list, _ := obj["identifier"].([]any)
	obj["identifier"] = append(list, map[string]any{"system": system, "value": value})
}

// Lookup finds the stored resources of type rt whose identifiers with system
// are among values, by OR-list searches.
func Lookup(ctx context.Context, door Door, rt, param, system string, values []string) ([]Current, error) {
	var out []Current
	for len(values) > 0 {
		n := min(SearchChunk, len(values))
		found, err := door.Search(ctx, rt, param+"="+OrList(system, values[:n])+"&_count=500")
		if err != nil {
			return nil, err
		}
		out = append(out, found...)
		values = values[n:]
	}
	return out, nil
}

// Group is what one person (or one held row) writes: it is stored whole or
// not at all.
type Group struct {
	Lines   []int    // the rows behind it
	Entries []Entry  // the writes
	Kinds   []string // per entry: resource, provenance or task
	States  []*State // per entry: the resource state (resources only)
	Held    []Held
	Same    int // resources its rows named that need no change

	run *Run // the run whose rows these are (nil: no resource written)
}

// provenanceEntries bounds the Provenance entries a transaction adds to its
// groups' writes (provenances: one for creates, one for updates).
const provenanceEntries = 2

// Commit writes the groups in as few transactions as the engine's Bundle
// limit allows (engine.MaxBundleEntries, a Group never split); when one fails,
// each of its Groups on its own, so that one person's problem rejects only
// that person's rows.
func Commit(ctx context.Context, door Door, groups []Group, dryRun bool, rep *Report) error {
	for len(groups) > 0 {
		n, entries := 0, 0
		for n < len(groups) && (n == 0 || entries+len(groups[n].Entries)+provenanceEntries <= engine.MaxBundleEntries) {
			entries += len(groups[n].Entries)
			n++
		}
		if err := commitOne(ctx, door, groups[:n], dryRun, rep); err != nil {
			return err
		}
		groups = groups[n:]
	}
	return nil
}

// commitOne writes the groups in one transaction; when that fails, each Group
// on its own.
func commitOne(ctx context.Context, door Door, groups []Group, dryRun bool, rep *Report) error {
	for i := range groups {
		if len(groups[i].Kinds) == 0 {
			for range groups[i].Entries {
				groups[i].Kinds = append(groups[i].Kinds, "task")
				groups[i].States = append(groups[i].States, nil)
			}
		}
	}
	if dryRun {
		for _, g := range groups {
			count(rep, g, nil)
		}
		return nil
	}
	var all []Entry
	for _, g := range groups {
		all = append(all, g.Entries...)
	}
	if len(all) == 0 {
		for _, g := range groups {
			count(rep, g, nil)
		}
		return nil
	}
	all = append(all, provenances(groups)...)
	res, err := door.Transaction(ctx, all)
	if err == nil {
		for _, g := range groups {
			count(rep, g, res[:len(g.Entries)])
			res = res[len(g.Entries):]
		}
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for _, g := range groups {
		if len(g.Entries) == 0 {
			count(rep, g, nil)
			continue
		}
		res, err := door.Transaction(ctx, append(g.Entries[:len(g.Entries):len(g.Entries)], provenances([]Group{g})...))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			reason := "not stored: " + Describe(err)
			for _, l := range g.Lines {
				rep.Add(l, "", "rejected", reason)
			}
			continue
		}
		count(rep, g, res)
	}
	return nil
}

// Describe is an error's message without the operation prefixes.
func Describe(err error) string {
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

// count adds a stored Group to the summary (res nil: a dry run, counted as if
// stored).
func count(rep *Report, g Group, res []EntryResult) {
	rep.Unchanged += g.Same
	for _, h := range g.Held {
		rep.Add(h.Line, "", "held", h.Problem)
	}
	for i, kind := range g.Kinds {
		if kind != "resource" {
			continue
		}
		e := g.Entries[i]
		if res == nil {
			if e.Method == "POST" {
				rep.Created++
			} else {
				rep.Updated++
			}
			continue
		}
		r := res[i]
		vid := versionOfLocation(r.Location)
		switch {
		case strings.HasPrefix(r.Status, "201"):
			rep.Created++
		case e.Method == "POST", e.IfMatch > 0 && vid == e.IfMatch:
			rep.Unchanged++
		default:
			rep.Updated++
		}
	}
}

func versionOfLocation(loc string) int {
	_, vid, _ := strings.Cut(loc, "/_history/")
	n := 0
	for _, c := range vid {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// Writes turns the changed states among states into writes, each with
// meta.source naming the rows (sources) behind it (SourceURI); a state no
// row touched is left out, and one that needs no change is counted as such.
// The transaction that stores the writes adds their Provenance
// (provenances): one per transaction, not one per resource.
func (r *Run) Writes(states []*State, sources map[*State][]SourceRow) Group {
	g := Group{run: r}
	lines := map[int]bool{}
	for _, s := range states {
		src := sources[s]
		if len(src) == 0 {
			continue
		}
		for _, r := range src {
			lines[r.Line] = true
		}
		if !s.Changed() {
			g.Same++
			continue
		}
		r.setSource(s.Obj, src)
		e := Entry{Resource: s.Obj}
		if s.ID == "" {
			e.Method, e.URL, e.FullURL, e.IfNoneExist = "POST", s.Type, s.FullURL, s.Cond
		} else {
			s.Obj["id"] = s.ID
			e.Method, e.URL, e.IfMatch = "PUT", s.Type+"/"+s.ID, s.Version
		}
		g.Entries = append(g.Entries, e)
		g.Kinds = append(g.Kinds, "resource")
		g.States = append(g.States, s)
	}
	for l := range lines {
		g.Lines = append(g.Lines, l)
	}
	sort.Ints(g.Lines)
	return g
}
