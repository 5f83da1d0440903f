package search

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"crs/fhir"
)

const examples = "../../../shared/fhir-r4/examples"

// TestUnsupportedParameters lists every R4 parameter of the served types that
// the server cannot evaluate. Only composite and special parameters may be here.
func TestUnsupportedParameters(t *testing.T) {
	r := Default()
	n := 0
	for _, rt := range fhir.ServedTypes() {
		for code, why := range r.Unsupported(rt) {
			if !strings.Contains(why, "composite parameters") && !strings.Contains(why, "special parameters") && !strings.Contains(why, "no expression") {
				t.Errorf("%s.%s unsupported: %s", rt, code, why)
			}
		}
		n += len(r.Params(rt))
	}
	if n < 300 {
		t.Fatalf("only %d supported parameters", n)
	}
	t.Logf("%d supported search parameters over %d types", n, len(fhir.ServedTypes()))
}

func load(t testing.TB, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(examples, name))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := fhir.Parse(b, fhir.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

func find(vals []fhir.IndexValue, param string) []fhir.IndexValue {
	var out []fhir.IndexValue
	for _, v := range vals {
		if v.Param == param {
			out = append(out, v)
		}
	}
	return out
}

func TestExtractExamples(t *testing.T) {
	r := Default()
	pat, _ := r.Extract("Patient", load(t, "Patient-example.json"))
	if f := find(pat, "family"); len(f) == 0 || f[0].Str != "chalmers" {
		t.Errorf("family: %+v", f)
	}
	if g := find(pat, "gender"); len(g) != 1 || g[0].Code != "male" {
		t.Errorf("gender: %+v", g)
	}
	if b := find(pat, "birthdate"); len(b) != 1 || !b[0].Low.Equal(time.Date(1974, 12, 25, 0, 0, 0, 0, time.UTC)) || !b[0].High.Equal(time.Date(1974, 12, 26, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("birthdate: %+v", b)
	}
	if id := find(pat, "identifier"); len(id) == 0 || id[0].System != "urn:oid:1.2.36.146.595.217.0.1" || id[0].Code != "12345" {
		t.Errorf("identifier: %+v", id)
	}
	if d := find(pat, "deceased"); len(d) != 1 || d[0].Code != "false" {
		t.Errorf("deceased: %+v", d)
	}
	if o := find(pat, "organization"); len(o) != 1 || o[0].RefType != "Organization" || o[0].RefID != "1" {
		t.Errorf("organization: %+v", o)
	}
	if ph := find(pat, "phone"); len(ph) == 0 {
		t.Errorf("phone: %+v", ph)
	}
	sr, _ := r.Extract("ServiceRequest", load(t, "ServiceRequest-example.json"))
	if s := find(sr, "subject"); len(s) != 1 || s[0].RefType != "Patient" || s[0].RefID != "example" {
		t.Errorf("subject: %+v", s)
	}
	if s := find(sr, "patient"); len(s) != 1 {
		t.Errorf("patient (resolve() is Patient): %+v", s)
	}
	enc, _ := r.Extract("Encounter", load(t, "Encounter-example.json"))
	if s := find(enc, "status"); len(s) != 1 || s[0].Code != "in-progress" {
		t.Errorf("encounter status: %+v", s)
	}
	if c := find(enc, "class"); len(c) != 1 || c[0].Code != "IMP" || c[0].System == "" {
		t.Errorf("encounter class: %+v", c)
	}
	goal, _ := r.Extract("Goal", load(t, "Goal-example.json"))
	if d := find(goal, "target-date"); len(d) != 1 {
		t.Errorf("target-date (as date): %+v", d)
	}
	if d := find(goal, "_id"); len(d) != 1 || d[0].Code != "example" {
		t.Errorf("_id: %+v", d)
	}
}

// TestExtractEveryExample: extraction succeeds on every example of the served
// types and finds values in each.
func TestExtractEveryExample(t *testing.T) {
	r := Default()
	files, _ := filepath.Glob(filepath.Join(examples, "*.json"))
	n := 0
	for _, f := range files {
		obj := load(t, filepath.Base(f))
		rt := fhir.ResourceType(obj)
		if !fhir.Served(rt) {
			continue
		}
		vals, err := r.Extract(rt, obj)
		if err != nil {
			t.Errorf("%s: %v", f, err)
		}
		if len(vals) == 0 {
			t.Errorf("%s: no index values", f)
		}
		n++
	}
	if n < 100 {
		t.Fatalf("only %d examples", n)
	}
}

func TestDateRange(t *testing.T) {
	cases := []struct {
		in     string
		lo, hi string
		ok     bool
	}{
		{"2026", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z", true},
		{"2026-11", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", true},
		{"2026-11-22", "2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z", true},
		{"2026-11-22T10:00", "2026-11-22T10:00:00Z", "2026-11-22T10:01:00Z", true},
		{"2026-11-22T10:00:05+01:00", "2026-11-22T09:00:05Z", "2026-11-22T09:00:06Z", true},
		{"2026-11-22T10:00:05.123Z", "2026-11-22T10:00:05.123Z", "2026-11-22T10:00:05.124Z", true},
		{"2026-13", "", "", false},
		{"2026-02-30", "", "", false},
		{"yesterday", "", "", false},
		{"2026-11-22T25:00", "", "", false},
	}
	for _, c := range cases {
		lo, hi, ok := DateRange(c.in)
		if ok != c.ok {
			t.Errorf("%s: ok %v", c.in, ok)
			continue
		}
		if ok && (lo.Format(time.RFC3339Nano) != c.lo || hi.Format(time.RFC3339Nano) != c.hi) {
			t.Errorf("%s: [%s, %s)", c.in, lo.Format(time.RFC3339Nano), hi.Format(time.RFC3339Nano))
		}
	}
}

func TestNumberRange(t *testing.T) {
	cases := []struct {
		in        string
		v, lo, hi float64
	}{
		{"1.5", 1.5, 1.45, 1.55},
		{"100", 100, 99.5, 100.5},
		{"1.50", 1.5, 1.495, 1.505},
		{"1e2", 100, 50, 150},
		{"-2", -2, -2.5, -1.5},
	}
	for _, c := range cases {
		v, lo, hi, ok := NumberRange(c.in)
		if !ok || v != c.v || !near(lo, c.lo) || !near(hi, c.hi) {
			t.Errorf("%s: %v [%v, %v) %v", c.in, v, lo, hi, ok)
		}
	}
	for _, bad := range []string{"", "1.", ".5", "abc", "1e999", "--1"} {
		if _, _, _, ok := NumberRange(bad); ok {
			t.Errorf("%q accepted", bad)
		}
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestParseQuery(t *testing.T) {
	r := Default()
	opt := ParseOptions{DefaultCount: 20, MaxCount: 100}
	type check func(t *testing.T, q *fhir.Query)
	cases := []struct {
		query string
		kind  fhir.Kind // Internal = ok
		expr  string
		check check
	}{
		{"family=Smith", fhir.Internal, "", func(t *testing.T, q *fhir.Query) {
			if q.Params[0].Values[0].Str != "smith" || q.Count != 20 {
				t.Errorf("%+v", q)
			}
		}},
		{"identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009", fhir.Internal, "", func(t *testing.T, q *fhir.Query) {
			v := q.Params[0].Values[0]
			if !v.HasSystem || v.System != "https://fhir.nhs.uk/Id/nhs-number" || v.Code != "9000000009" {
				t.Errorf("%+v", v)
			}
		}},
		{"identifier=|x", fhir.Internal, "", func(t *testing.T, q *fhir.Query) {
			v := q.Params[0].Values[0]
			if !v.HasSystem || v.System != "" || v.Code != "x" {
				t.Errorf("%+v", v)
			}
		}},
		{`family=a\,b,c`, fhir.Internal, "", func(t *testing.T, q *fhir.Query) {
			if len(q.Params[0].Values) != 2 || q.Params[0].Values[0].Raw != "a,b" {
				t.Errorf("%+v", q.Params[0].Values)
			}
		}},
		{`identifier=a\|b|c`, fhir.Internal, "", func(t *testing.T, q *fhir.Query) {
			if v := q.Params[0].Values[0]; v.System != "a|b" || v.Code != "c" {
				t.Errorf("%+v", v)
			}
		}},
		{"birthdate=ge2026-11&birthdate=lt2027", fhir.Internal, "", func(t *testing.T, q *fhir.Query) {
			if len(q.Params) != 2 || q.Params[0].Values[0].Prefix != fhir.PrefixGe || q.Params[1].Values[0].Prefix != fhir.PrefixLt {
				t.Errorf("%+v", q.Params)
			}
		}},
		{"general-practitioner:Practitioner=p1", fhir.Internal, "", func(t *testing.T, q *fhir.Query) {
			if v := q.Params[0].Values[0]; v.RefType != "Practitioner" || v.RefID != "p1" {
				t.Errorf("%+v", v)
			}
		}},
		{"gender:missing=true", fhir.Internal, "", func(t *testing.T, q *fhir.Query) {
			if m := q.Params[0].Missing; m == nil || !*m {
				t.Errorf("%+v", q.Params[0])
			}
		}},
		{"_count=1000&_sort=-birthdate,family&_total=none", fhir.Internal, "", func(t *testing.T, q *fhir.Query) {
			if q.Count != 100 || len(q.Sort) != 2 || !q.Sort[0].Descending || q.Total != fhir.TotalNone {
				t.Errorf("%+v", q)
			}
		}},
		{"nonsense=1", fhir.Invalid, "nonsense", nil},
		{"family:nonsense=x", fhir.Invalid, "family:nonsense", nil},
		{"birthdate=2026-13", fhir.Invalid, "birthdate", nil},
		{"birthdate=xx2026", fhir.Invalid, "birthdate", nil},
		{"family=", fhir.Invalid, "family", nil},
		{`birthdate={"$gt":""}`, fhir.Invalid, "birthdate", nil},
		{`family={"$ne":null}`, fhir.Invalid, "family", nil},
		{"_count=-1", fhir.Invalid, "_count", nil},
		{"_sort=nonsense", fhir.Invalid, "_sort", nil},
		{"_total=maybe", fhir.Invalid, "_total", nil},
		{"gender:missing=perhaps", fhir.Invalid, "gender:missing", nil},
		{"_include=Patient:organization", fhir.Internal, "", func(t *testing.T, q *fhir.Query) {
			if len(q.Include) != 1 || q.Include[0].Param.Code != "organization" || q.Include[0].Reverse {
				t.Errorf("%+v", q.Include)
			}
		}},
		{"_revinclude:iterate=Goal:subject&_include=*", fhir.Internal, "", func(t *testing.T, q *fhir.Query) {
			if len(q.Include) != 2 || !q.Include[0].Reverse || !q.Include[0].Iterate || q.Include[1].Param != nil {
				t.Errorf("%+v", q.Include)
			}
		}},
		{"general-practitioner.name=x", fhir.Internal, "", func(t *testing.T, q *fhir.Query) {
			if len(q.Params[0].Chain) != 2 { // of Organization, Practitioner and PractitionerRole, two have name
				t.Errorf("%+v", q.Params[0].Chain)
			}
		}},
		{"general-practitioner:Practitioner.identifier=s|v", fhir.Internal, "", func(t *testing.T, q *fhir.Query) {
			if c := q.Params[0].Chain; len(c) != 1 || c[0].Type != "Practitioner" || c[0].Params[0].Values[0].Code != "v" {
				t.Errorf("%+v", c)
			}
		}},
		{"organization.partof.name=x", fhir.Internal, "", func(t *testing.T, q *fhir.Query) {
			if c := q.Params[0].Chain[0].Params[0].Chain; len(c) != 1 || c[0].Type != "Organization" {
				t.Errorf("%+v", c)
			}
		}},
		{"_has:Goal:subject:lifecycle-status=active", fhir.Internal, "", func(t *testing.T, q *fhir.Query) {
			if h := q.Params[0].Has; h == nil || h.Type != "Goal" || h.Ref.Code != "subject" {
				t.Errorf("%+v", q.Params[0])
			}
		}},
		{"_has:Encounter:subject:_has:CarePlan:encounter:status=active", fhir.Internal, "", func(t *testing.T, q *fhir.Query) {
			if h := q.Params[0].Has.Query.Params[0].Has; h == nil || h.Type != "CarePlan" {
				t.Errorf("%+v", q.Params[0])
			}
		}},
		{"_summary=count", fhir.Internal, "", func(t *testing.T, q *fhir.Query) {
			if q.Count != 0 || q.Summary != "count" {
				t.Errorf("%+v", q)
			}
		}},
		{"_elements=name,birthDate", fhir.Internal, "", func(t *testing.T, q *fhir.Query) {
			if len(q.Elements) != 2 {
				t.Errorf("%+v", q.Elements)
			}
		}},
		{"gender.name=x", fhir.Invalid, "gender.name", nil},
		{"nonsense.name=x", fhir.Invalid, "nonsense.name", nil},
		{"general-practitioner.nonsense=x", fhir.Invalid, "general-practitioner.nonsense", nil},
		{"organization.partof.partof.partof.partof.partof.name=x", fhir.Invalid, "partof.name", nil},
		{"_has:Goal:subject=x", fhir.Invalid, "_has:Goal:subject", nil},
		{"_has:Goal:lifecycle-status:subject=x", fhir.Invalid, "_has:Goal:lifecycle-status:subject", nil},
		{"_has:Observation:subject:code=x", fhir.Invalid, "_has:Observation:subject:code", nil},
		{"_include=Goal:subject", fhir.Invalid, "_include", nil},
		{"_include=Patient:gender", fhir.Invalid, "_include", nil},
		{"_include:nonsense=Patient:organization", fhir.Invalid, "_include:nonsense", nil},
		{"_revinclude=Goal:*", fhir.Invalid, "_revinclude", nil},
		{"_summary=maybe", fhir.Invalid, "_summary", nil},
		{"_elements=a$b", fhir.Invalid, "_elements", nil},
		{"_contained=true", fhir.NotSupported, "_contained", nil},
		{"identifier:of-type=a|b", fhir.Invalid, "identifier:of-type", nil},
		{"gender:of-type=a|b|c", fhir.Internal, "", func(t *testing.T, q *fhir.Query) {}},
		{"general-practitioner:Goal=x", fhir.Invalid, "general-practitioner:Goal", nil},
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			var raw []fhir.RawParam
			for _, part := range strings.Split(c.query, "&") {
				n, v, _ := strings.Cut(part, "=")
				raw = append(raw, fhir.RawParam{Name: n, Value: v})
			}
			q, err := r.ParseQuery("Patient", raw, opt)
			if c.kind == fhir.Internal {
				if err != nil {
					t.Fatal(err)
				}
				c.check(t, q)
				return
			}
			if err == nil {
				t.Fatalf("accepted: %+v", q)
			}
			e := fhir.AsError(err)
			if e.Kind != c.kind || e.Issues[0].Expression != c.expr {
				t.Fatalf("got %v at %q, want %v at %q: %v", e.Kind, e.Issues[0].Expression, c.kind, c.expr, err)
			}
		})
	}
	if q, err := r.ParseQuery("Patient", []fhir.RawParam{{Name: "nonsense", Value: "1"}}, ParseOptions{Lenient: true}); err != nil || len(q.Params) != 0 {
		t.Fatalf("lenient: %v %+v", err, q)
	}
}

func TestFormatQuery(t *testing.T) {
	r := Default()
	q, err := r.ParseQuery("Patient", []fhir.RawParam{{Name: "family", Value: "a b"}, {Name: "_count", Value: "5"}, {Name: "_cursor", Value: "old"}}, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := FormatQuery(q, "next1"); got != "family=a+b&_count=5&_cursor=next1" {
		t.Fatal(got)
	}
}

func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"family=Smith", "birthdate=ge2026-11", `identifier=a\|b|c`, "_sort=-family&_count=3", "gender:missing=true", "subject:Patient=Patient/1", "x=$"} {
		f.Add(s)
	}
	r := Default()
	f.Fuzz(func(t *testing.T, s string) {
		var raw []fhir.RawParam
		for _, part := range strings.Split(s, "&") {
			n, v, _ := strings.Cut(part, "=")
			raw = append(raw, fhir.RawParam{Name: n, Value: v})
		}
		for _, rt := range []string{"Patient", "ServiceRequest"} {
			q, err := r.ParseQuery(rt, raw, ParseOptions{})
			if err != nil {
				if fhir.KindOf(err) == fhir.Internal {
					t.Fatalf("internal error: %v", err)
				}
				continue
			}
			_ = FormatQuery(q, "c")
		}
	})
}

func FuzzExtract(f *testing.F) {
	f.Add(`{"resourceType":"Patient","name":[{"family":"x"}],"birthDate":"2020"}`)
	f.Add(`{"resourceType":"Patient","deceasedBoolean":true,"telecom":[{"system":"phone","value":"1"}]}`)
	f.Add(`{"resourceType":"Patient","name":"notalist","gender":1,"link":[{"other":{"reference":5}}]}`)
	r := Default()
	f.Fuzz(func(t *testing.T, s string) {
		obj, err := fhir.Parse([]byte(s), fhir.DefaultLimits)
		if err != nil {
			return
		}
		_, _ = r.Extract("Patient", obj)
	})
}

func BenchmarkExtract(b *testing.B) {
	r := Default()
	files, _ := filepath.Glob(filepath.Join(examples, "ServiceRequest-*.json"))
	sort.Strings(files)
	var res []map[string]any
	for _, f := range files {
		res = append(res, load(b, filepath.Base(f)))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := r.Extract("ServiceRequest", res[i%len(res)]); err != nil {
			b.Fatal(err)
		}
	}
}
