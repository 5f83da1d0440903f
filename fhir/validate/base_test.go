package validate

import (
	"regexp"
	"sort"
	"strings"
	"testing"

	"crs/fhir"
)

// sr wraps elements into a minimal valid ServiceRequest.
func sr(extra string) string {
	return `{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"Patient/1"}` + extra + `}`
}

// TestRefused: one case per class of input R4 forbids; each must be refused
// with an error at the named element whose message names the rule.
func TestRefused(t *testing.T) {
	cases := []struct {
		name, res, expr, rule string
	}{
		// Wrong JSON shapes on complex elements.
		{"name array of arrays", `{"resourceType":"Patient","name":[["Smith"]]}`, "Patient.name[0]", "JSON object"},
		{"address of strings", `{"resourceType":"Patient","address":["1 High St"]}`, "Patient.address[0]", "JSON object"},
		{"text as string", `{"resourceType":"Patient","text":"x"}`, "Patient.text", "JSON object"},
		{"subject as string", `{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":"Patient/1"}`, "ServiceRequest.subject", "JSON object"},
		{"period as array", `{"resourceType":"Encounter","status":"finished","class":{"code":"HH"},"period":[{"start":"2026-01-01"}]}`, "Encounter.period", "single value"},
		{"description as string", `{"resourceType":"Goal","lifecycleStatus":"active","subject":{"reference":"Patient/1"},"description":"tea"}`, "Goal.description", "JSON object"},
		{"name null", `{"resourceType":"Patient","name":[null]}`, "Patient.name[0]", "JSON object"},
		{"meta as string", `{"resourceType":"Patient","meta":"x"}`, "Patient.meta", "JSON object"},
		{"single for array", `{"resourceType":"Patient","name":{"family":"x"}}`, "Patient.name", "JSON array"},
		// Primitives out of their type.
		{"integer too big", `{"resourceType":"Patient","multipleBirthInteger":2147483648}`, "Patient.multipleBirthInteger", "32-bit"},
		{"integer 1e400", `{"resourceType":"Patient","multipleBirthInteger":1e400}`, "Patient.multipleBirthInteger", "exponent"},
		{"integer 1.0", `{"resourceType":"Patient","multipleBirthInteger":1.0}`, "Patient.multipleBirthInteger", "fraction"},
		{"integer 2.5", `{"resourceType":"Patient","multipleBirthInteger":2.5}`, "Patient.multipleBirthInteger", "fraction"},
		{"integer as string", `{"resourceType":"Patient","multipleBirthInteger":"2"}`, "Patient.multipleBirthInteger", "JSON number"},
		{"positiveInt 0", `{"resourceType":"CarePlan","status":"active","intent":"plan","subject":{"reference":"Patient/1"},"activity":[{"detail":{"status":"scheduled","scheduledTiming":{"repeat":{"frequency":0}}}}]}`, "CarePlan.activity[0].detail.scheduledTiming.repeat.frequency", "positiveInt"},
		{"boolean as string", `{"resourceType":"Patient","active":"true"}`, "Patient.active", "boolean"},
		{"30 February", `{"resourceType":"Patient","birthDate":"2026-02-30"}`, "Patient.birthDate", "does not exist"},
		{"29 February 1900", `{"resourceType":"Patient","birthDate":"1900-02-29"}`, "Patient.birthDate", "does not exist"},
		{"dateTime without zone", `{"resourceType":"Patient","deceasedDateTime":"2026-01-01T10:00:00"}`, "Patient.deceasedDateTime", "zone"},
		{"instant without time", `{"resourceType":"Patient","meta":{"lastUpdated":"2026-01-01"}}`, "Patient.meta.lastUpdated", "instant"},
		{"bad id", `{"resourceType":"Patient","id":"a_b"}`, "Patient.id", "id"},
		{"code with spaces", `{"resourceType":"Patient","gender":" male"}`, "Patient.gender", "whitespace"},
		{"uri with space", `{"resourceType":"Patient","identifier":[{"system":"http://x y","value":"1"}]}`, "Patient.identifier[0].system", "whitespace"},
		{"bad base64", `{"resourceType":"Patient","photo":[{"contentType":"image/png","data":"abc"}]}`, "Patient.photo[0].data", "base64"},
		{"control character", `{"resourceType":"Patient","name":[{"family":"a\u0001b"}]}`, "Patient.name[0].family", "control"},
		{"string over 1 MB", `{"resourceType":"Patient","name":[{"family":"` + strings.Repeat("x", 1<<20+1) + `"}]}`, "Patient.name[0].family", "limit"},
		// Empty things (ele-1).
		{"empty array", `{"resourceType":"Patient","name":[]}`, "Patient.name", "ele-1"},
		{"empty object in array", `{"resourceType":"Patient","name":[{}]}`, "Patient.name[0]", "ele-1"},
		{"empty object", `{"resourceType":"Patient","maritalStatus":{}}`, "Patient.maritalStatus", "ele-1"},
		{"empty identifier", `{"resourceType":"Patient","identifier":[{}]}`, "Patient.identifier[0]", "ele-1"},
		{"empty primitive extension", `{"resourceType":"Patient","_birthDate":{}}`, "Patient.birthDate", "ele-1"},
		{"empty string", `{"resourceType":"Patient","birthDate":""}`, "Patient.birthDate", "ele-1"},
		{"null primitive", `{"resourceType":"Patient","birthDate":null}`, "Patient.birthDate", "ele-1"},
		{"primitive extension without value", `{"resourceType":"Patient","_birthDate":{"extension":[{"url":"http://example.org/x"}]}}`, "Patient.birthDate.extension[0]", "ext-1"},
		{"_given longer than given", `{"resourceType":"Patient","name":[{"given":["a"],"_given":[null,{"id":"x"}]}]}`, "Patient.name[0].given", "align"},
		{"_family as array", `{"resourceType":"Patient","name":[{"family":"a","_family":[{"id":"x"}]}]}`, "Patient.name[0].family", "not an array"},
		{"null in given without extension", `{"resourceType":"Patient","name":[{"given":["a",null]}]}`, "Patient.name[0].given[1]", "ele-1"},
		{"only id", `{"resourceType":"Patient","maritalStatus":{"id":"x"}}`, "Patient.maritalStatus", "ele-1"},
		{"companion with only an id", `{"resourceType":"Patient","_birthDate":{"id":"x"}}`, "Patient.birthDate", "ele-1"},
		// Choice types.
		{"two deceased", `{"resourceType":"Patient","deceasedBoolean":true,"deceasedDateTime":"2026-01-01"}`, "Patient.deceased", "more than one value"},
		{"choice of wrong type", `{"resourceType":"Patient","deceasedString":"yes"}`, "Patient.deceasedString", "unknown element"},
		// Unknown elements.
		{"unknown element", `{"resourceType":"Patient","foo":1}`, "Patient.foo", "unknown element"},
		{"unknown nested", `{"resourceType":"Patient","name":[{"nick":"x"}]}`, "Patient.name[0].nick", "unknown element"},
		{"fhir_comments", `{"resourceType":"Patient","fhir_comments":["x"]}`, "Patient.fhir_comments", "unknown element"},
		{"companion of a complex element", `{"resourceType":"Patient","_name":[{"id":"x"}]}`, "Patient._name", "unknown element"},
		// Cardinality and bindings.
		{"missing status", `{"resourceType":"ServiceRequest","intent":"order","subject":{"reference":"Patient/1"}}`, "ServiceRequest.status", "required"},
		{"bad code", `{"resourceType":"Patient","gender":"x"}`, "Patient.gender", "required binding"},
		// Extensions (ext-1).
		{"extension value and extensions", `{"resourceType":"Patient","extension":[{"url":"http://example.org/a","valueString":"x","extension":[{"url":"b","valueString":"y"}]}]}`, "Patient.extension[0]", "ext-1"},
		{"extension two values", `{"resourceType":"Patient","extension":[{"url":"http://example.org/a","valueString":"x","valueBoolean":true}]}`, "Patient.extension[0].value", "more than one value"},
		{"extension relative url", `{"resourceType":"Patient","extension":[{"url":"a","valueString":"x"}]}`, "Patient.extension[0].url", "absolute"},
		{"extension without url", `{"resourceType":"Patient","extension":[{"valueString":"x"}]}`, "Patient.extension[0].url", "required"},
		// Narrative (txt-1, txt-2).
		{"script", `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x<script>alert(1)</script></div>"}}`, "Patient.text.div", "txt-1"},
		{"onclick", `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p onclick=\"x()\">x</p></div>"}}`, "Patient.text.div", "txt-1"},
		{"iframe", `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><iframe src=\"http://x\">x</iframe></div>"}}`, "Patient.text.div", "txt-1"},
		{"javascript href", `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\" JavaScript:x()\">x</a></div>"}}`, "Patient.text.div", "txt-1"},
		{"no namespace", `{"resourceType":"Patient","text":{"status":"generated","div":"<div>x</div>"}}`, "Patient.text.div", "txt-1"},
		{"not well formed", `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>x</div>"}}`, "Patient.text.div", "txt-1"},
		{"html entity", `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">&reg;</div>"}}`, "Patient.text.div", "txt-1"},
		{"empty narrative", `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"> </div>"}}`, "Patient.text.div", "txt-2"},
		// per-1 and other data type invariants.
		{"period start after end", `{"resourceType":"Encounter","status":"finished","class":{"code":"HH"},"period":{"start":"2026-02-01","end":"2026-01-31"}}`, "Encounter.period", "per-1"},
		{"period partial dates", `{"resourceType":"Encounter","status":"finished","class":{"code":"HH"},"period":{"start":"2026-03","end":"2026-02-28"}}`, "Encounter.period", "per-1"},
		{"period across zones", `{"resourceType":"Encounter","status":"finished","class":{"code":"HH"},"period":{"start":"2026-01-01T10:00:00+00:00","end":"2026-01-01T11:00:00+02:00"}}`, "Encounter.period", "per-1"},
		{"period of unknown order", `{"resourceType":"Encounter","status":"finished","class":{"code":"HH"},"period":{"start":"2026-02-01","end":"2026-02-01T10:00:00Z"}}`, "Encounter.period", "per-1"},
		{"script in a string", `{"resourceType":"Patient","name":[{"text":"Standard <SCRIPT>x()</script>"}]}`, "Patient.name[0].text", "HTML"},
		{"contact point without system", `{"resourceType":"Patient","telecom":[{"value":"0123"}]}`, "Patient.telecom[0]", "cpt-2"},
		{"quantity code without system", `{"resourceType":"Encounter","status":"finished","class":{"code":"HH"},"length":{"value":1,"code":"min"}}`, "Encounter.length", "qty-3"},
		// References.
		{"local reference to nothing", sr(`,"requester":{"reference":"#nope"}`), "ServiceRequest.requester.reference", "ref-1"},
		{"dot-dot reference", sr(`,"requester":{"reference":"Practitioner/../x"}`), "ServiceRequest.requester.reference", "not a valid reference"},
		{"reference without id", sr(`,"requester":{"reference":"Practitioner/"}`), "ServiceRequest.requester.reference", "not a valid reference"},
		{"reference to unknown type", sr(`,"requester":{"reference":"Foo/1"}`), "ServiceRequest.requester.reference", "not a resource type"},
		{"bad urn:uuid", sr(`,"requester":{"reference":"urn:uuid:not-a-uuid"}`), "ServiceRequest.requester.reference", "urn:uuid"},
		{"patient as GP", `{"resourceType":"Patient","generalPractitioner":[{"reference":"Patient/2"}]}`, "Patient.generalPractitioner[0].reference", "cannot refer to a Patient"},
		{"absolute URL of a wrong type", `{"resourceType":"Patient","managingOrganization":{"reference":"https://example.org/fhir/Patient/2"}}`, "Patient.managingOrganization.reference", "cannot refer to a Patient"},
		{"conditional reference of a wrong type", `{"resourceType":"Patient","managingOrganization":{"reference":"Patient?identifier=x"}}`, "Patient.managingOrganization.reference", "cannot refer to a Patient"},
		// Contained resources (dom-*).
		{"contained without id", sr(`,"contained":[{"resourceType":"Practitioner","name":[{"family":"x"}]}]`), "ServiceRequest.contained[0].id", "dom-3"},
		{"contained unreferenced", sr(`,"contained":[{"resourceType":"Practitioner","id":"p","name":[{"family":"x"}]}]`), "ServiceRequest.contained[0]", "dom-3"},
		{"contained duplicate ids", sr(`,"requester":{"reference":"#p"},"contained":[{"resourceType":"Practitioner","id":"p","name":[{"family":"x"}]},{"resourceType":"Practitioner","id":"p","name":[{"family":"y"}]}]`), "ServiceRequest.contained[1].id", "same id"},
		{"nested contained", sr(`,"requester":{"reference":"#p"},"contained":[{"resourceType":"Practitioner","id":"p","contained":[{"resourceType":"Organization","id":"o","name":"x"}]}]`), "ServiceRequest.contained[0].contained", "dom-2"},
		{"contained versionId", sr(`,"requester":{"reference":"#p"},"contained":[{"resourceType":"Practitioner","id":"p","meta":{"versionId":"1"}}]`), "ServiceRequest.contained[0].meta", "dom-4"},
		{"contained security", sr(`,"requester":{"reference":"#p"},"contained":[{"resourceType":"Practitioner","id":"p","meta":{"security":[{"code":"R"}]}}]`), "ServiceRequest.contained[0].meta.security", "dom-5"},
		{"contained invalid", sr(`,"requester":{"reference":"#p"},"contained":[{"resourceType":"Practitioner","id":"p","gender":"x"}]`), "ServiceRequest.contained[0].gender", "required binding"},
		// The served types' own invariants.
		{"pat-1", `{"resourceType":"Patient","contact":[{"gender":"male"}]}`, "Patient.contact[0]", "pat-1"},
		{"org-1", `{"resourceType":"Organization","active":true}`, "Organization", "org-1"},
		{"grp-1", `{"resourceType":"Group","type":"person","actual":false,"member":[{"entity":{"reference":"Patient/a"}}]}`, "Group", "grp-1"},
		{"org-2", `{"resourceType":"Organization","name":"x","address":[{"use":"home","city":"x"}]}`, "Organization.address[0]", "org-2"},
		{"org-3", `{"resourceType":"Organization","name":"x","telecom":[{"system":"phone","value":"1","use":"home"}]}`, "Organization.telecom[0]", "org-3"},
		{"prr-1", sr(`,"orderDetail":[{"text":"x"}]`), "ServiceRequest", "prr-1"},
		{"cpl-3", `{"resourceType":"CarePlan","status":"active","intent":"plan","subject":{"reference":"Patient/1"},"activity":[{"reference":{"reference":"ServiceRequest/1"},"detail":{"status":"scheduled"}}]}`, "CarePlan.activity[0]", "cpl-3"},
		{"gol-1", `{"resourceType":"Goal","lifecycleStatus":"active","subject":{"reference":"Patient/1"},"description":{"text":"x"},"target":[{"detailString":"x"}]}`, "Goal.target[0]", "gol-1"},
		{"ctm-1", `{"resourceType":"CareTeam","participant":[{"member":{"reference":"Patient/1"},"onBehalfOf":{"reference":"Organization/1"}}]}`, "CareTeam.participant[0]", "ctm-1"},
		// Bundle entries by their own type.
		{"bundle entry", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","gender":"x"},"request":{"method":"POST","url":"Patient"}}]}`, "Bundle.entry[0].resource.gender", "required binding"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			errs := errorsOf(v.Validate(parse(t, c.res)))
			var got []string
			for _, e := range errs {
				got = append(got, e.Expression+": "+e.Diagnostics)
				if e.Expression == c.expr && strings.Contains(e.Diagnostics, c.rule) {
					return
				}
			}
			sort.Strings(got)
			t.Fatalf("no error at %s about %q; got:\n%s", c.expr, c.rule, strings.Join(got, "\n"))
		})
	}
}

// TestAccepted: what R4 allows must stay allowed.
func TestAccepted(t *testing.T) {
	cases := []struct{ name, res string }{
		{"minimal", `{"resourceType":"Patient"}`},
		{"aligned given", `{"resourceType":"Patient","name":[{"given":["a","b"],"_given":[null,{"extension":[{"url":"http://example.org/x","valueString":"y"}]}]}]}`},
		{"companion only", `{"resourceType":"Patient","_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/data-absent-reason","valueCode":"unknown"}]}}`},
		{"value and companion", `{"resourceType":"Patient","birthDate":"1970","_birthDate":{"id":"b"}}`},
		{"given only in companion", `{"resourceType":"Patient","name":[{"_given":[{"extension":[{"url":"http://example.org/x","valueString":"y"}]}]}]}`},
		{"leap day", `{"resourceType":"Patient","birthDate":"2000-02-29"}`},
		{"partial dates", `{"resourceType":"Encounter","status":"finished","class":{"code":"HH"},"period":{"start":"2026-02","end":"2026-03-01"}}`},
		{"date and dateTime", `{"resourceType":"Encounter","status":"finished","class":{"code":"HH"},"period":{"start":"2026-02-01","end":"2026-02-02T00:00:00Z"}}`},
		{"less-than sign", `{"resourceType":"Patient","name":[{"text":"a <b> c < d <scripted"}]}`},
		{"dateTime with zone", `{"resourceType":"Patient","deceasedDateTime":"2026-01-01T10:00:00.123+14:00"}`},
		{"negative integer", `{"resourceType":"Patient","multipleBirthInteger":-1}`},
		{"big decimal", `{"resourceType":"Encounter","status":"finished","class":{"code":"HH"},"length":{"value":1e400}}`},
		{"nested extension relative url", `{"resourceType":"Patient","extension":[{"url":"http://example.org/a","extension":[{"url":"b","valueString":"y"}]}]}`},
		{"contained referenced", sr(`,"requester":{"reference":"#p"},"contained":[{"resourceType":"Practitioner","id":"p","name":[{"family":"x"}]}]`)},
		{"contained refers to container", sr(`,"contained":[{"resourceType":"Provenance","id":"p","target":[{"reference":"#"}],"recorded":"2026-01-01T00:00:00Z","agent":[{"who":{"display":"x"}}]}]`)},
		{"references", sr(`,"requester":{"reference":"Practitioner/1/_history/2"},"performer":[{"reference":"https://example.org/fhir/Organization/1"},{"reference":"urn:uuid:0f4f0e34-8c7c-4ffb-9b1c-4a6b21ad2bd1"},{"identifier":{"value":"x"}}]`)},
		{"conditional reference", sr(`,"requester":{"reference":"Practitioner?identifier=x|1"}`)},
		{"narrative", `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p class=\"x\" style=\"color:red\">a &amp; b<br/><a href=\"http://x\">y</a><img src=\"#p\" alt=\"\"/></p><table border=\"1\"><tr><td colspan=\"2\">z</td></tr></table></div>"}}`},
		{"pathway basedOn", `{"resourceType":"CarePlan","status":"active","intent":"plan","subject":{"reference":"Patient/1"},"basedOn":[{"reference":"ServiceRequest/1"}]}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if errs := errorsOf(v.Validate(parse(t, c.res))); len(errs) > 0 {
				t.Fatalf("%+v", errs)
			}
		})
	}
}

// TestPrimitivesAgreeWithSpecRegex: the hand-written checks accept only what
// the R4 regular expression of the type accepts (they refuse more: impossible
// dates, integers out of range).
func TestPrimitivesAgreeWithSpecRegex(t *testing.T) {
	samples := []string{"a", " a", "a ", "a  b", "a b", "a\tb", "0", "01", "-0", "-1", "1.5", "2147483647", "2147483648", "1e3",
		"2026", "2026-1", "2026-01", "2026-13", "2026-02-29", "2024-02-29", "0000", "2026-01-01T10:00", "2026-01-01T10:00:00Z",
		"2026-01-01T10:00:00.5+14:00", "2026-01-01T10:00:00+14:01", "2026-01-01T24:00:00Z", "10:00:00", "10:00", "10:00:60.1",
		"urn:uuid:0f4f0e34-8c7c-4ffb-9b1c-4a6b21ad2bd1", "urn:uuid:0F4F0E34-8c7c-4ffb-9b1c-4a6b21ad2bd1", "urn:oid:1.2.3", "urn:oid:1.02",
		"abcd", "ab=d", "ab==", "a b c d", "abc", "a-b.c", strings.Repeat("a", 65), "http://x", "x y", "true", "false", "yes",
		"a\x0bb", "a\nb"}
	for typ, p := range v.primitives {
		if p.Regex == "" || typ == "xhtml" {
			continue
		}
		re := regexp.MustCompile(`^(?:` + p.Regex + `)$`)
		for _, s := range samples {
			var ok bool
			switch p.JSON {
			case "number":
				ok = checkNumber(typ, s) == "" && regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`).MatchString(s)
			case "boolean":
				ok = s == "true" || s == "false"
			default:
				ok = checkString(typ, s) == ""
			}
			if ok && !re.MatchString(s) {
				t.Errorf("%s accepts %q, which its R4 regex %s refuses", typ, s, p.Regex)
			}
		}
	}
}

// FuzzValidateLocated: whatever the input, validation does not panic and every
// error it reports says where (a FHIRPath) and what.
func FuzzValidateLocated(f *testing.F) {
	f.Add(`{"resourceType":"Patient","name":[["Smith"]],"_birthDate":{},"deceasedBoolean":true,"deceasedDateTime":"2026-02-30"}`)
	f.Add(`{"resourceType":"Encounter","status":"finished","class":{"code":"HH"},"period":{"start":"2026-02-01","end":"2026-01-31"},"contained":[{"resourceType":"Patient","id":"x"}]}`)
	f.Add(`{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><script/>x</div>"},"extension":[{"url":"a"}]}`)
	f.Add(`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"CarePlan","basedOn":[{"reference":"Foo/1"}]}}]}`)
	f.Fuzz(func(t *testing.T, s string) {
		obj, err := fhir.Parse([]byte(s), fhir.Limits{MaxBytes: 1 << 16, MaxDepth: 32})
		if err != nil {
			return
		}
		for _, is := range v.Validate(obj) {
			if is.Code == "too-costly" {
				continue
			}
			if is.Expression == "" || is.Diagnostics == "" {
				t.Fatalf("issue without location or text: %+v", is)
			}
		}
	})
}
