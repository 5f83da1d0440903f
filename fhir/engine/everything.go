package engine

import (
	"context"
	_ "embed"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"time"

	"crs/fhir"
	"crs/fhir/store"
)

//go:generate go run gen.go

//go:embed compartments.json
var compartmentsJSON []byte

//go:embed everything.json
var everythingJSON []byte

// everythingRule says what $everything gathers around a resource of one type.
type everythingRule struct {
	Compartment string   `json:"compartment"`
	OnlyAsked   []string `json:"onlyAsked"` // gathered only when _type names them
	Follow      []string `json:"follow"`
	Reverse     []struct {
		Type  string `json:"type"`
		Param string `json:"param"`
	} `json:"reverse"`
}

// compartments maps compartment type → member type → reference parameters;
// everything maps a type to its $everything rule. Both are data (JSON above).
var (
	compartments map[string]map[string][]string
	everything   map[string]everythingRule
)

func init() {
	if err := json.Unmarshal(compartmentsJSON, &compartments); err != nil {
		panic("compartments.json: " + err.Error())
	}
	var extra struct {
		Compartments map[string]map[string][]string `json:"compartments"`
		Everything   map[string]everythingRule      `json:"everything"`
	}
	if err := json.Unmarshal(everythingJSON, &extra); err != nil {
		panic("everything.json: " + err.Error())
	}
	for k, v := range extra.Compartments {
		compartments[k] = v
	}
	everything = extra.Everything
}

// maxEverything bounds the resources one $everything gathers.
const maxEverything = 10000

// Everything runs $everything on rt/id (Patient or EpisodeOfCare): the resource,
// the members of its compartment, the resources they refer to and the ones that
// refer to them, as the rules in everything.json say. Parameters: _since,
// _type, _count, _cursor (paging).
func (e *Engine) Everything(ctx context.Context, rt, id string, params []fhir.RawParam) (b *Bundle, err error) {
	ctx, ia := e.begin(ctx, "operation", "E", rt, id)
	if ia != nil {
		ia.rec.Query = rawQuery(params)
	}
	defer func() { b, err = endBundle(b, e.end(ctx, ia, err)) }()
	rule, ok := everything[rt]
	if !ok {
		return nil, fhir.Errorf(fhir.NotSupported, "", "$everything is not supported on %s", rt)
	}
	focal, err := e.Read(ctx, rt, id)
	if err != nil {
		return nil, err
	}
	r := e.guard(ctx, e.store)
	var since time.Time
	var types map[string]bool
	count, offset := e.defCount, 0
	var keep []fhir.RawParam
	for _, p := range params {
		switch p.Name {
		case "_since":
			if since, err = parseInstant(p.Value); err != nil {
				return nil, fhir.Errorf(fhir.Invalid, "_since", "_since must be an instant, not %q", p.Value)
			}
			keep = append(keep, p)
		case "_type":
			types = map[string]bool{}
			for _, t := range strings.Split(p.Value, ",") {
				if !fhir.Served(t) {
					return nil, fhir.Errorf(fhir.Invalid, "_type", "%q is not a served resource type", t)
				}
				types[t] = true
			}
			keep = append(keep, p)
		case "_count":
			n, err := strconv.Atoi(p.Value)
			if err != nil || n < 1 {
				return nil, fhir.Errorf(fhir.Invalid, "_count", "_count must be a positive integer, not %q", p.Value)
			}
			count = min(n, e.maxCount)
			keep = append(keep, fhir.RawParam{Name: "_count", Value: strconv.Itoa(count)})
		case "_cursor":
			if offset, err = strconv.Atoi(p.Value); err != nil || offset < 0 {
				return nil, fhir.Errorf(fhir.Invalid, "_cursor", "the paging cursor is not valid")
			}
		default:
			return nil, fhir.Errorf(fhir.Invalid, p.Name, "$everything does not take the parameter %q (it takes _since, _type, _count)", p.Name)
		}
	}
	all, err := e.gather(ctx, r, focal, rule, types)
	if err != nil {
		return nil, fhir.WithOp("everything", err)
	}
	var out []store.Version
	for _, v := range all {
		if (types == nil || types[v.Type]) && !v.LastUpdated.Before(since) {
			out = append(out, v)
		}
	}
	b = e.newBundle("searchset")
	total := len(out)
	b.Total = &total
	path := e.base + "/" + rt + "/" + id + "/$everything"
	b.Link = append(b.Link, BundleLink{Relation: "self", URL: linkURL(path, formatRaw(keep, cursorOf(offset)))})
	if offset+count < len(out) {
		b.Link = append(b.Link, BundleLink{Relation: "next", URL: linkURL(path, formatRaw(keep, strconv.Itoa(offset+count)))})
	}
	if offset < len(out) {
		out = out[offset:min(len(out), offset+count)]
	} else {
		out = nil
	}
	for _, v := range out {
		b.Entry = append(b.Entry, BundleEntry{FullURL: e.base + "/" + v.Type + "/" + v.ID, Resource: v.Body, Search: &EntrySearch{Mode: "match"}})
	}
	return b, nil
}

func cursorOf(offset int) string {
	if offset == 0 {
		return ""
	}
	return strconv.Itoa(offset)
}

// gather collects the resources of $everything around focal, the focal resource
// first and the rest ordered by type and id.
func (e *Engine) gather(ctx context.Context, r resolver, focal store.Version, rule everythingRule, types map[string]bool) ([]store.Version, error) {
	seen := map[key]store.Version{{focal.Type, focal.ID}: focal}
	add := func(v store.Version) bool {
		k := key{v.Type, v.ID}
		if _, ok := seen[k]; ok || v.Deleted {
			return false
		}
		seen[k] = v
		return true
	}
	tooMany := func() error {
		if len(seen) > maxEverything {
			return fhir.Errorf(fhir.Invalid, "", "$everything would return more than %d resources; narrow it with _type or _since", maxEverything)
		}
		return nil
	}
	for typ, params := range compartments[rule.Compartment] {
		if contains(rule.OnlyAsked, typ) && !types[typ] {
			continue
		}
		q := &fhir.Query{Type: typ, Count: maxEverything, Total: fhir.TotalNone,
			Compartment: &fhir.Compartment{Type: focal.Type, ID: focal.ID, Params: params}}
		res, err := r.Search(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, m := range res.Matches {
			add(m)
		}
	}
	follow := map[string]bool{}
	for _, t := range rule.Follow {
		follow[t] = true
	}
	frontier := make([]store.Version, 0, len(seen))
	for _, v := range seen {
		frontier = append(frontier, v)
	}
	for round := 0; round < 4 && len(frontier) > 0; round++ {
		var next []store.Version
		for _, v := range frontier {
			for _, raw := range references(v.Body) {
				ref, ok := fhir.ParseReference(raw, e.base)
				if !ok || !follow[ref.Type] {
					continue
				}
				if _, ok := seen[key{ref.Type, ref.ID}]; ok {
					continue
				}
				t, err := r.Read(ctx, ref.Type, ref.ID)
				if fhir.KindOf(err) == fhir.NotFound {
					continue
				}
				if err != nil {
					return nil, err
				}
				if add(t) {
					next = append(next, t)
				}
			}
		}
		for _, rr := range rule.Reverse {
			def, ok := e.params.Param(rr.Type, rr.Param)
			if !ok {
				continue
			}
			var values []fhir.Value
			for _, v := range frontier {
				if len(def.Targets) == 0 || contains(def.Targets, v.Type) {
					values = append(values, fhir.Value{RefType: v.Type, RefID: v.ID})
				}
			}
			for len(values) > 0 {
				n := min(len(values), 100)
				q := &fhir.Query{Type: rr.Type, Count: maxEverything, Total: fhir.TotalNone, Params: []fhir.Param{{Def: def, Values: values[:n]}}}
				values = values[n:]
				res, err := r.Search(ctx, q)
				if err != nil {
					return nil, err
				}
				for _, m := range res.Matches {
					if add(m) {
						next = append(next, m)
					}
				}
			}
		}
		if err := tooMany(); err != nil {
			return nil, err
		}
		frontier = next
	}
	out := make([]store.Version, 0, len(seen))
	for _, v := range seen {
		if v.Type != focal.Type || v.ID != focal.ID {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Type != out[j].Type {
			return out[i].Type < out[j].Type
		}
		return out[i].ID < out[j].ID
	})
	return append([]store.Version{focal}, out...), nil
}

// references returns every Reference.reference string in a resource body.
func references(body []byte) []string {
	obj, err := fhir.Parse(body, fhir.Limits{})
	if err != nil {
		return nil
	}
	var out []string
	var walk func(any)
	walk = func(x any) {
		switch t := x.(type) {
		case map[string]any:
			for k, v := range t {
				if s, ok := v.(string); ok && k == "reference" {
					out = append(out, s)
				} else {
					walk(v)
				}
			}
		case []any:
			for _, v := range t {
				walk(v)
			}
		}
	}
	walk(obj)
	return out
}
