package measures

import (
	"bytes"
	"embed"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"crs/audit"
	"crs/auth"
	"crs/auth/signin"
	"crs/fhir"
	"crs/fhir/engine"
)

//go:embed templates/*.html assets/*
var pageFiles embed.FS

// pages renders the MDT caseload page, the timeline, the charts and the CSV.
type pages struct {
	s    *Service
	tmpl *template.Template
	css  []byte
}

func newPages(s *Service) (*pages, error) {
	funcs := template.FuncMap{
		"date": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.UTC().Format("Mon 2 Jan")
		},
		"datetime": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.UTC().Format("2 Jan 2006 15:04")
		},
		"iso":      func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"locality": LocalityName,
		"title": func(s string) string {
			if s == "" {
				return "—"
			}
			return strings.ToUpper(s[:1]) + s[1:]
		},
	}
	t, err := template.New("").Funcs(funcs).ParseFS(pageFiles, "templates/*.html")
	if err != nil {
		return nil, err
	}
	css, err := pageFiles.ReadFile("assets/style.css")
	if err != nil {
		return nil, err
	}
	return &pages{s: s, tmpl: t, css: css}, nil
}

// ServeHTTP serves the page door: GET / (the caseload), /mdt/timeline/{id},
// /mdt/charts.svg, /mdt/measures.csv and /mdt/style.css. The caller's
// principal must be in the request's context; each answer is audited.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.page.serve(w, r) }

func (p *pages) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		p.fail(w, r, fhir.Errorf(fhir.MethodNotAllowed, "", "%s is not allowed here: these pages are read-only", r.Method), nil)
		return
	}
	path := r.URL.Path
	switch {
	case path == "/mdt/style.css":
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=3600")
		_, _ = w.Write(p.css)
	case path == "/":
		p.caseload(w, r)
	case strings.HasPrefix(path, "/mdt/timeline/"):
		p.timeline(w, r, strings.TrimPrefix(path, "/mdt/timeline/"))
	case path == "/mdt/charts.svg":
		p.charts(w, r)
	case path == "/mdt/measures.csv":
		p.csv(w, r)
	default:
		p.fail(w, r, fhir.Errorf(fhir.NotFound, "", "There is no page at %s.", path), nil)
	}
}

// audit records a page request that failed before the engine saw it (a bad
// parameter, no such page, a method not allowed); false means it could not
// be recorded and nothing may be answered. A page view is audited by the
// engine, one AuditEvent per call it makes (each search a BALP query event
// with its query), so the page records nothing of its own beside them.
func (p *pages) audit(w http.ResponseWriter, r *http.Request, interaction string, entities []string, err error) bool {
	if engine.Audited(r.Context()) {
		return true
	}
	rec := audit.Record{Interaction: interaction, Action: "E", Query: r.URL.RawQuery, Entities: entities}
	if err != nil {
		rec.Outcome = fhir.AsError(err)
	}
	if aerr := p.s.eng.Audit(r.Context(), rec); aerr != nil {
		p.render(w, r, http.StatusServiceUnavailable, "error.html", map[string]any{"Title": "Not recorded", "Message": "The request could not be recorded in the audit trail, so it is not answered. Try again shortly."})
		return false
	}
	return true
}

// fail answers an error as a readable page with the status of its kind.
func (p *pages) fail(w http.ResponseWriter, r *http.Request, err error, entities []string) {
	if !p.audit(w, r, "operation", entities, err) {
		return
	}
	e := fhir.AsError(err)
	msg := e.Error()
	title := "Something is wrong with the request"
	switch e.Kind {
	case fhir.NotFound, fhir.Gone:
		title = "Not found"
	case fhir.Unauthorized:
		title = "Sign-in needed"
	case fhir.Forbidden:
		title = "Not allowed"
		msg = "Your role does not allow you to see this."
	case fhir.Internal, fhir.Unavailable:
		title = "The server could not answer"
		msg = "Something went wrong on the server; it has been logged. Try again, and tell the service desk if it keeps happening."
	}
	p.render(w, r, e.Kind.Status(), "error.html", map[string]any{"Title": title, "Message": msg})
}

func (p *pages) render(w http.ResponseWriter, r *http.Request, status int, name string, data map[string]any) {
	if signin.InSession(r.Context()) {
		if who := auth.PrincipalFrom(r.Context()); who != nil {
			data["User"] = who.Subject
		}
	}
	var buf bytes.Buffer
	if err := p.tmpl.ExecuteTemplate(&buf, name, data); err != nil {
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// selection is the locality and provider picked on the page.
type selection struct {
	Locality, Provider string
}

func (p *pages) selection(q url.Values) (selection, error) {
	sel := selection{Locality: q.Get("locality"), Provider: q.Get("provider")}
	for name := range q {
		switch name {
		case "locality", "provider":
			if len(q[name]) > 1 {
				return sel, fhir.Errorf(fhir.Invalid, name, "Pick one %s at a time.", name)
			}
		default:
			return sel, fhir.Errorf(fhir.Invalid, name, "This page has no setting called %q.", name)
		}
	}
	if sel.Locality != "" && LocalityName(sel.Locality) == "" {
		return sel, fhir.Errorf(fhir.Invalid, "locality", "There is no locality %q. Pick one of North Warwickshire, South Warwickshire or Rugby.", sel.Locality)
	}
	if sel.Provider != "" && !fhir.ValidID(sel.Provider) {
		return sel, fhir.Errorf(fhir.Invalid, "provider", "There is no care provider %q.", sel.Provider)
	}
	return sel, nil
}

func (sel selection) query() string {
	v := url.Values{}
	if sel.Locality != "" {
		v.Set("locality", sel.Locality)
	}
	if sel.Provider != "" {
		v.Set("provider", sel.Provider)
	}
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

type option struct {
	Value, Name string
	Selected    bool
}

func (p *pages) caseload(w http.ResponseWriter, r *http.Request) {
	sel, err := p.selection(r.URL.Query())
	if err != nil {
		p.fail(w, r, err, nil)
		return
	}
	cl, err := p.s.caseload.Caseload(r.Context(), Filter{Locality: sel.Locality, Provider: sel.Provider})
	if err != nil {
		p.fail(w, r, err, nil)
		return
	}
	provs := cl.Region.Providers
	if sel.Provider != "" {
		if _, ok := cl.OrgNames[sel.Provider]; !ok {
			p.fail(w, r, fhir.Errorf(fhir.Invalid, "provider", "There is no care provider %q that you can see.", sel.Provider), nil)
			return
		}
		provs[sel.Provider] = true
	}
	var locs []option
	for _, l := range Localities {
		locs = append(locs, option{l.Code, l.Name, l.Code == sel.Locality})
	}
	var provOpts []option
	for id := range provs {
		if id == "" {
			continue
		}
		provOpts = append(provOpts, option{id, cl.OrgNames[id], id == sel.Provider})
	}
	sort.Slice(provOpts, func(i, j int) bool { return provOpts[i].Name < provOpts[j].Name })
	flags := map[string]int{}
	waiting := 0
	for _, row := range cl.Rows {
		if row.Waiting {
			waiting++
		}
		for _, f := range row.Flags {
			flags[f.Code]++
		}
	}
	var flagCounts []struct {
		Flag  Flag
		Count int
	}
	for _, f := range []Flag{FlagPastSixWeeks, FlagLateStart, FlagNoStart3Days, FlagLateAssessment, FlagMissedVisits, FlagIdentityReview} {
		flagCounts = append(flagCounts, struct {
			Flag  Flag
			Count int
		}{f, flags[f.Code]})
	}
	place := "All localities"
	if sel.Locality != "" {
		place = LocalityName(sel.Locality)
	}
	if sel.Provider != "" {
		place += " · " + cl.OrgNames[sel.Provider]
	}
	now := p.s.now()
	end := now.UTC().Format("2006-01-02")
	start := now.UTC().AddDate(0, -6, 0).Format("2006-01-02")
	p.render(w, r, http.StatusOK, "caseload.html", map[string]any{
		"Title": "MDT caseload — " + place, "Place": place, "Localities": locs, "Providers": provOpts, "Sel": sel,
		"Rows": cl.Rows, "Waiting": waiting, "Flags": flagCounts, "OrgNames": cl.OrgNames, "Now": now,
		"ChartURL": "/mdt/charts.svg" + sel.query(),
		"CSVURL":   "/mdt/measures.csv?periodStart=" + start + "&periodEnd=" + end, "PeriodStart": start, "PeriodEnd": end,
	})
}

func (p *pages) timeline(w http.ResponseWriter, r *http.Request, id string) {
	tl, err := p.s.caseload.Timeline(r.Context(), id)
	if err != nil {
		if fhir.KindOf(err) == fhir.NotFound || fhir.KindOf(err) == fhir.Gone {
			err = fhir.Errorf(fhir.NotFound, "", "There is no referral %q that you can see.", id)
		}
		p.fail(w, r, err, nil)
		return
	}
	p.render(w, r, http.StatusOK, "timeline.html", map[string]any{"Title": "Episode timeline — " + tl.Name, "T": tl, "Back": r.Referer()})
}

// exitShort are the exit routes' labels under the chart's bars.
var exitShort = map[string]string{
	"independent": "Independent", "reduced-long-term-care": "Less LTC", "long-term-care-unchanged": "Same LTC",
	"readmitted": "Readmitted", "died": "Died", "transferred": "Transferred", "other": "Other",
}

// chartWeeks is how many weeks the weekly charts show.
const chartWeeks = 26

func (p *pages) charts(w http.ResponseWriter, r *http.Request) {
	sel, err := p.selection(r.URL.Query())
	if err != nil {
		p.fail(w, r, err, nil)
		return
	}
	now := p.s.now().UTC()
	first := weekOf(now).AddDate(0, 0, -7*(chartWeeks-1))
	req := Request{Start: first, End: weekOf(now).AddDate(0, 0, 7), PeriodText: [2]string{first.Format("2006-01-02"), now.Format("2006-01-02")}}
	ids := []string{"crs-care-start-24h", "crs-care-start-3-days", "crs-care-calls", "crs-exit-routes"}
	// The per-locality panels compare localities, so they keep the provider
	// filter only.
	views, err := p.s.evaluateViews(r.Context(), ids, req, map[string]func(*Referral) bool{
		"here": func(rf *Referral) bool {
			return (sel.Locality == "" || rf.Locality == sel.Locality) && (sel.Provider == "" || rf.Provider == sel.Provider)
		},
		"localities": func(rf *Referral) bool { return sel.Provider == "" || rf.Provider == sel.Provider },
	})
	if err != nil {
		p.fail(w, r, err, nil)
		return
	}
	res, byLoc := views["here"], views["localities"]
	var weeks []string
	for k := 0; k < chartWeeks; k++ {
		weeks = append(weeks, first.AddDate(0, 0, 7*k).Format("2006-01-02"))
	}
	weekly := func(g *GroupResult, note bool) []bar {
		var out []bar
		for _, wk := range weeks {
			t, _ := time.Parse("2006-01-02", wk)
			b := bar{Label: t.Format("2 Jan")}
			if f := g.Strata["week"][wk]; f != nil {
				b.Value = f.Score
				if note {
					b.Note = itoa(f.Counts["numerator"]) + " of " + itoa(f.Counts["denominator"])
				}
			}
			out = append(out, b)
		}
		return out
	}
	var exits []bar
	for _, g := range res["crs-exit-routes"].Groups {
		v := float64(g.Figures.Counts["initial-population"])
		exits = append(exits, bar{Label: exitShort[g.ID], Value: &v, Note: g.Text})
	}
	perLocality := func(id string) []bar {
		var out []bar
		g := byLoc[id].Groups[0]
		for _, l := range Localities {
			b := bar{Label: l.Name}
			if f := g.Strata["locality"][l.Code]; f != nil {
				b.Value = f.Score
				b.Note = itoa(f.Counts["numerator"]) + " of " + itoa(f.Counts["denominator"])
			}
			out = append(out, b)
		}
		return out
	}
	var hours *GroupResult
	for _, g := range res["crs-care-calls"].Groups {
		if g.ID == "hours-released-per-week" {
			hours = g
		}
	}
	place := "all localities"
	if sel.Locality != "" {
		place = LocalityName(sel.Locality)
	}
	panels := []panel{
		{Title: "Care started within 24 h of discharge ready, by week", Bars: weekly(res["crs-care-start-24h"].Groups[0], true), Percent: true},
		{Title: "Started within 3 days of referral, by week", Bars: weekly(res["crs-care-start-3-days"].Groups[0], true), Percent: true, Target: 0.53, TLabel: "published 53%"},
		{Title: "Care hours a week released, by week episodes ended", Bars: weekly(hours, false), Unit: "h/wk"},
		{Title: "Exit routes, last 26 weeks", Bars: exits, Unit: "people", Wide: true},
		{Title: "Started within 3 days, by locality (26 weeks)", Bars: perLocality("crs-care-start-3-days"), Percent: true, Target: 0.53, TLabel: "53%", Wide: true},
		{Title: "Started within 24 h, by locality (26 weeks)", Bars: perLocality("crs-care-start-24h"), Percent: true, Wide: true},
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(svgPanels("Pathway measures for "+place+", weeks from "+weeks[0], panels)))
}

func (p *pages) csv(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ids := MeasureIDs()
	var params []fhir.RawParam
	for name, vals := range q {
		for _, v := range vals {
			if name == "measure" {
				continue
			}
			params = append(params, fhir.RawParam{Name: name, Value: v})
		}
	}
	sort.Slice(params, func(i, j int) bool { return params[i].Name < params[j].Name })
	if m := q["measure"]; len(m) > 0 {
		known := map[string]bool{}
		for _, id := range ids {
			known[id] = true
		}
		for _, id := range m {
			if !known[id] {
				p.fail(w, r, fhir.Errorf(fhir.NotFound, "measure", "There is no measure %q.", id), nil)
				return
			}
		}
		ids = m
	}
	req, err := ParseRequest(ids[0], params)
	if err != nil {
		p.fail(w, r, err, nil)
		return
	}
	res, err := p.s.evaluateAll(r.Context(), ids, req, nil)
	if err != nil {
		p.fail(w, r, err, nil)
		return
	}
	var buf bytes.Buffer
	if err := WriteCSV(&buf, ids, res); err != nil {
		p.fail(w, r, fhir.InternalError("csv", err), nil)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="crs-measures-`+req.PeriodText[0]+`-`+req.PeriodText[1]+`.csv"`)
	_, _ = w.Write(buf.Bytes())
}

// Unauthenticated renders the page shown when the server needs a signed-in
// caller and the request has none; signIn is where to sign in ("": nowhere).
func (s *Service) Unauthenticated(w http.ResponseWriter, r *http.Request, why, signIn string) {
	s.page.render(w, r, http.StatusUnauthorized, "error.html", map[string]any{"Title": "Sign-in needed", "Message": why, "SignIn": signIn})
}

// SignedOut renders the page shown after signing out; provider is the
// identity provider's sign-out address ("": none).
func (s *Service) SignedOut(w http.ResponseWriter, r *http.Request, provider string) {
	w.Header().Set("Cache-Control", "no-store")
	s.page.render(w, r, http.StatusOK, "signedout.html", map[string]any{"Title": "Signed out", "Provider": provider})
}
