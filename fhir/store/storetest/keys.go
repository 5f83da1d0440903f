package storetest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"crs/fhir"
	"crs/fhir/search"
	"crs/fhir/store"
)

// The chains the access policy and the caseload ask of every candidate (a
// person's referrals' performer organisation, a record's person's responsible
// council, a record's organisation's ODS code), asked after every kind of
// write that changes what they reach, in every order: the referral before the
// person and the organisation, a referral reassigned to another provider or
// another person, an organisation's code changed, deleted and restored, a
// person moving council, several writes in one transaction, a transaction
// that fails. A backend that keeps such chains as denormalised keys must
// give exactly the chain's answers; one that does not answers by the chain.

const (
	ods = "https://fhir.nhs.uk/Id/ods-organization-code"
	gss = "http://statistics.data.gov.uk/id/statistical-geography"
	la  = "https://community-recovery.example.org/fhir/StructureDefinition/Extension-CRS-ResponsibleLocalAuthority"
)

// keyRegistry is the R4 registry with the pathway's responsible-la parameter.
func keyRegistry(t *testing.T) *search.Registry {
	t.Helper()
	r, err := search.New()
	if err != nil {
		t.Fatal(err)
	}
	err = r.Add(map[string]any{"resourceType": "SearchParameter", "url": "https://community-recovery.example.org/fhir/SearchParameter/crs-responsible-la",
		"code": "responsible-la", "base": []any{"Patient"}, "type": "token",
		"expression": "Patient.extension('" + la + "').value"})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// keyWorld writes resources and asks queries with keyRegistry.
type keyWorld struct {
	t    *testing.T
	s    store.Store
	reg  *search.Registry
	vids map[string]int // the current version of each Type/id
}

func (w *keyWorld) version(res string, deleted bool) (store.Version, []fhir.IndexValue) {
	w.t.Helper()
	obj, err := fhir.Parse([]byte(res), fhir.DefaultLimits)
	if err != nil {
		w.t.Fatalf("bad test resource %s: %v", res, err)
	}
	rt, id := fhir.ResourceType(obj), fhir.ID(obj)
	vid := w.vids[rt+"/"+id] + 1
	now := time.Now().UTC()
	if deleted {
		return store.Version{Type: rt, ID: id, VersionID: vid, LastUpdated: now, Deleted: true, Method: "DELETE"}, nil
	}
	obj["meta"] = map[string]any{"versionId": fmt.Sprint(vid), "lastUpdated": now.Format(time.RFC3339Nano)}
	index, err := w.reg.Extract(rt, obj)
	if err != nil {
		w.t.Fatal(err)
	}
	body, _ := fhir.Marshal(obj)
	method := "PUT"
	if vid == 1 {
		method = "POST"
	}
	return store.Version{Type: rt, ID: id, VersionID: vid, LastUpdated: now, Method: method, Body: body}, index
}

// write stores the next version of each resource (a "-Type/id" deletes it)
// in one transaction, in the order given.
func (w *keyWorld) write(resources ...string) {
	w.t.Helper()
	if err := w.tryWrite(nil, resources...); err != nil {
		w.t.Fatal(err)
	}
}

// tryWrite is write, with check (when set) called inside the transaction
// after the writes; its error fails the transaction.
func (w *keyWorld) tryWrite(check func(store.Tx) error, resources ...string) error {
	w.t.Helper()
	var vs []store.Version
	var idx [][]fhir.IndexValue
	for _, res := range resources {
		if typeID, ok := strings.CutPrefix(res, "-"); ok {
			rt, id, _ := strings.Cut(typeID, "/")
			res = `{"resourceType":"` + rt + `","id":"` + id + `"}`
			v, _ := w.version(res, true)
			vs, idx = append(vs, v), append(idx, nil)
		} else {
			v, i := w.version(res, false)
			vs, idx = append(vs, v), append(idx, i)
		}
		last := vs[len(vs)-1]
		w.vids[last.Type+"/"+last.ID] = last.VersionID
	}
	err := w.s.Write(ctx, func(tx store.Tx) error {
		for i, v := range vs {
			if err := tx.Put(ctx, v, idx[i]); err != nil {
				return err
			}
		}
		if check != nil {
			return check(tx)
		}
		return nil
	})
	if err != nil {
		for _, v := range vs {
			w.vids[v.Type+"/"+v.ID] = v.VersionID - 1
		}
	}
	return err
}

func (w *keyWorld) query(rt, qs string) *fhir.Query {
	w.t.Helper()
	var raw []fhir.RawParam
	for _, part := range strings.Split(qs, "&") {
		n, v, _ := strings.Cut(part, "=")
		raw = append(raw, fhir.RawParam{Name: n, Value: v})
	}
	q, err := w.reg.ParseQuery(rt, raw, search.ParseOptions{DefaultCount: 3, MaxCount: 1000})
	if err != nil {
		w.t.Fatalf("query %s: %v", qs, err)
	}
	q.Total = fhir.TotalAccurate
	return q
}

// ids runs a query through r over all its pages (of 3) and returns the sorted
// ids, checking the total.
func (w *keyWorld) ids(r interface {
	Search(context.Context, *fhir.Query) (*store.SearchResult, error)
}, rt, qs string) string {
	w.t.Helper()
	q := w.query(rt, qs)
	var out []string
	total := -1
	for {
		res, err := r.Search(ctx, q)
		if err != nil {
			w.t.Fatalf("%s?%s: %v", rt, qs, err)
		}
		if total < 0 {
			total = res.Total
		}
		for _, v := range res.Matches {
			out = append(out, v.ID)
		}
		if res.Next == "" {
			break
		}
		q.Cursor = res.Next
	}
	if total != len(out) {
		w.t.Errorf("%s?%s: total %d, %d matches", rt, qs, total, len(out))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// expect checks each query's matches after step.
func (w *keyWorld) expect(step string, cases [][3]string) {
	w.t.Helper()
	for _, c := range cases {
		if got := w.ids(w.s, c[0], c[1]); got != c[2] {
			w.t.Errorf("after %s: %s?%s: got [%s], want [%s]", step, c[0], c[1], got, c[2])
		}
	}
}

func keyOrg(id, code string) string {
	return `{"resourceType":"Organization","id":"` + id + `","identifier":[{"system":"` + ods + `","value":"` + code + `"}]}`
}

func keyPatient(id, council string) string {
	ext := ""
	if council != "" {
		ext = `,"extension":[{"url":"` + la + `","valueCodeableConcept":{"coding":[{"system":"` + gss + `","code":"` + council + `"}]}}]`
	}
	return `{"resourceType":"Patient","id":"` + id + `"` + ext + `}`
}

func keyReferral(id, patient, performer, requester string) string {
	return `{"resourceType":"ServiceRequest","id":"` + id + `","status":"active","intent":"plan","subject":{"reference":"Patient/` + patient +
		`"},"performer":[{"reference":"Organization/` + performer + `"}],"requester":{"reference":"Organization/` + requester + `"}}`
}

func keyGoal(id, patient string) string {
	return `{"resourceType":"Goal","id":"` + id + `","lifecycleStatus":"active","description":{"text":"tea"},"subject":{"reference":"Patient/` + patient + `"}}`
}

// The queries of the group, by what they ask.
const (
	patientsOf = "_has:ServiceRequest:subject:performer:Organization.identifier=" + ods + "|"
	goalsOf    = "subject:Patient._has:ServiceRequest:subject:performer:Organization.identifier=" + ods + "|"
	referredBy = "_has:ServiceRequest:subject:requester:Organization.identifier=" + ods + "|"
	assignedTo = "performer:Organization.identifier=" + ods + "|"
	goalsIn    = "subject:Patient.responsible-la=" + gss + "|"
	episodesOf = "organization:Organization.identifier=" + ods + "|"
)

func testDenormalisedKeys(t *testing.T, s store.Store) {
	w := &keyWorld{t: t, s: s, reg: keyRegistry(t), vids: map[string]int{}}
	// A referral before its person and both organisations exist.
	w.write(keyReferral("sr1", "pa", "o1", "t1"), keyGoal("ga", "pa"))
	w.expect("a referral to nothing yet", [][3]string{
		{"Patient", patientsOf + "P1", ""},
		{"ServiceRequest", assignedTo + "P1", ""},
		{"Goal", goalsOf + "P1", ""},
	})
	w.write(keyPatient("pa", "E07000218"))
	w.expect("the person", [][3]string{
		{"Patient", patientsOf + "P1", ""},
		{"Goal", goalsIn + "E07000218", "ga"},
	})
	w.write(keyOrg("o1", "P1"), keyOrg("t1", "T1"))
	w.expect("the organisations", [][3]string{
		{"Patient", patientsOf + "P1", "pa"},
		{"Patient", referredBy + "T1", "pa"},
		{"ServiceRequest", assignedTo + "P1", "sr1"},
		{"ServiceRequest", "performer:Organization.identifier=P1", "sr1"},
		{"Goal", goalsOf + "P1", "ga"},
		{"Goal", goalsOf + "P1&lifecycle-status=active", "ga"},
	})
	// Reassigned to another provider, which exists only later.
	w.write(keyReferral("sr1", "pa", "o2", "t1"))
	w.expect("reassignment to an unknown provider", [][3]string{
		{"Patient", patientsOf + "P1", ""},
		{"Patient", patientsOf + "P2", ""},
		{"Goal", goalsOf + "P1", ""},
		{"Patient", referredBy + "T1", "pa"},
	})
	w.write(keyOrg("o2", "P2"))
	w.expect("the new provider", [][3]string{
		{"Patient", patientsOf + "P2", "pa"},
		{"Patient", patientsOf + "P1," + ods + "|P2", "pa"},
		{"Goal", goalsOf + "P2", "ga"},
	})
	// The referral moved to another person (who exists), and a second one.
	w.write(keyPatient("pb", "E07000219"), keyGoal("gb", "pb"), keyReferral("sr1", "pb", "o2", "t1"), keyReferral("sr2", "pb", "o1", "t1"))
	w.expect("a referral moved to another person", [][3]string{
		{"Patient", patientsOf + "P2", "pb"},
		{"Patient", patientsOf + "P1", "pb"},
		{"Patient", referredBy + "T1", "pb"},
		{"Goal", goalsOf + "P2", "gb"},
		{"Goal", goalsOf + "P1", "gb"},
	})
	// An organisation's code changes.
	w.write(keyOrg("o2", "P3"))
	w.expect("a provider's code changed", [][3]string{
		{"Patient", patientsOf + "P2", ""},
		{"Patient", patientsOf + "P3", "pb"},
		{"ServiceRequest", assignedTo + "P3", "sr1"},
		{"Goal", goalsOf + "P3", "gb"},
	})
	// A referral deleted, then an organisation deleted and restored.
	w.write("-ServiceRequest/sr2")
	w.expect("a referral deleted", [][3]string{
		{"Patient", patientsOf + "P1", ""},
		{"Goal", goalsOf + "P1", ""},
		{"ServiceRequest", assignedTo + "P1", ""},
	})
	w.write("-Organization/o2")
	w.expect("a provider deleted", [][3]string{
		{"Patient", patientsOf + "P3", ""},
		{"ServiceRequest", assignedTo + "P3", ""},
	})
	w.write(keyOrg("o2", "P3"))
	w.expect("a provider restored", [][3]string{
		{"Patient", patientsOf + "P3", "pb"},
		{"Goal", goalsOf + "P3", "gb"},
	})
	// A person moving council, updated otherwise, deleted.
	w.write(keyPatient("pb", "E07000218"))
	w.expect("a person moved council", [][3]string{
		{"Goal", goalsIn + "E07000218", "ga gb"},
		{"Goal", goalsIn + "E07000219", ""},
		{"Patient", patientsOf + "P3", "pb"},
	})
	w.write(keyPatient("pa", ""))
	w.expect("a person with no council", [][3]string{
		{"Goal", goalsIn + "E07000218", "gb"},
		{"Patient", referredBy + "T1", "pb"},
	})
	w.write("-Patient/pb")
	w.expect("a person deleted", [][3]string{
		{"Goal", goalsIn + "E07000218", ""},
		{"Goal", goalsOf + "P3", ""},
		{"Patient", patientsOf + "P3", ""},
	})
	// One transaction in reverse order: the referral, then its person and
	// provider; the transaction's own searches see the result.
	err := w.tryWrite(func(tx store.Tx) error {
		if got := w.ids(tx, "Patient", patientsOf+"P9"); got != "pc" {
			return fmt.Errorf("inside the transaction: %s?%s: [%s], want [pc]", "Patient", patientsOf+"P9", got)
		}
		return nil
	}, keyReferral("sr9", "pc", "o9", "t1"), keyGoal("gc", "pc"), keyPatient("pc", "E06000001"), keyOrg("o9", "P9"))
	if err != nil {
		t.Fatal(err)
	}
	w.expect("one transaction", [][3]string{
		{"Patient", patientsOf + "P9", "pc"},
		{"Goal", goalsOf + "P9", "gc"},
		{"Goal", goalsIn + "E06000001", "gc"},
		{"Patient", referredBy + "T1", "pc"},
	})
	// A failed transaction leaves nothing behind.
	failed := errors.New("planned failure")
	err = w.tryWrite(func(store.Tx) error { return failed }, keyReferral("sr10", "pc", "o1", "t1"), keyOrg("o9", "P10"))
	if !errors.Is(err, failed) {
		t.Fatalf("failing transaction: %v", err)
	}
	w.expect("a failed transaction", [][3]string{
		{"Patient", patientsOf + "P1", ""},
		{"Patient", patientsOf + "P10", ""},
		{"Patient", patientsOf + "P9", "pc"},
	})
	// The other organisation chains, and queries the keys must not change:
	// a chain with another condition inside, a :not, a chain through any
	// type, codes without a system.
	w.write(`{"resourceType":"EpisodeOfCare","id":"ep1","status":"active","patient":{"reference":"Patient/pc"},"managingOrganization":{"reference":"Organization/o9"}}`)
	w.expect("an episode", [][3]string{
		{"EpisodeOfCare", episodesOf + "P9", "ep1"},
		{"EpisodeOfCare", "patient:Patient.responsible-la=E06000001", "ep1"},
		{"ServiceRequest", "performer:Organization.identifier:not=" + ods + "|P9", "sr1"},
		{"ServiceRequest", "performer.identifier=P9", "sr9"},
		{"ServiceRequest", "performer:Organization.identifier=P9&status=active", "sr9"},
		{"Patient", "_has:ServiceRequest:subject:status=active", "pc"},
		{"Patient", "_has:ServiceRequest:subject:performer:Organization.identifier=P9&_has:ServiceRequest:subject:requester:Organization.identifier=T1", "pc"},
	})
	testPlanOrganisations(w)
}

func keyPlan(id, patient string) string {
	return `{"resourceType":"CarePlan","id":"` + id + `","status":"active","intent":"plan","subject":{"reference":"Patient/` + patient + `"}}`
}

func keyPerson(id, org string) string {
	return `{"resourceType":"Patient","id":"` + id + `","managingOrganization":{"reference":"Organization/` + org + `"}}`
}

// plansOf asks for a provider's care plans through their person's managing
// organisation, a chain ending in a reference.
const plansOf = "subject:Patient.organization=Organization/"

// testPlanOrganisations asks a care plan's person's organisation after
// every kind of write that changes it.
func testPlanOrganisations(w *keyWorld) {
	// The plan before its person; the person's organisation never exists
	// (a reference search does not need its target).
	w.write(keyPlan("cp1", "pp"))
	w.expect("a plan for nobody yet", [][3]string{{"CarePlan", plansOf + "m1", ""}})
	w.write(keyPerson("pp", "m1"))
	w.expect("the person", [][3]string{
		{"CarePlan", plansOf + "m1", "cp1"},
		{"CarePlan", "subject:Patient.organization=m1", "cp1"},
		{"CarePlan", "subject:Patient.organization=Organization/m1&status=active", "cp1"},
		{"CarePlan", plansOf + "m2," + "Organization/m1", "cp1"},
		{"CarePlan", "subject:Patient.organization=Patient/m1", ""},
	})
	// The person moves provider; a second plan, a plan moved to another person.
	w.write(keyPerson("pp", "m2"), keyPlan("cp2", "pp"))
	w.expect("the person moved provider", [][3]string{
		{"CarePlan", plansOf + "m1", ""},
		{"CarePlan", plansOf + "m2", "cp1 cp2"},
	})
	w.write(keyPerson("pq", "m1"), keyPlan("cp2", "pq"))
	w.expect("a plan moved to another person", [][3]string{
		{"CarePlan", plansOf + "m1", "cp2"},
		{"CarePlan", plansOf + "m2", "cp1"},
	})
	// A person with no organisation, deleted, restored; a plan deleted.
	w.write(`{"resourceType":"Patient","id":"pp"}`)
	w.expect("a person without a provider", [][3]string{{"CarePlan", plansOf + "m2", ""}})
	w.write(keyPerson("pp", "m2"))
	w.write("-Patient/pp")
	w.expect("a person deleted", [][3]string{{"CarePlan", plansOf + "m2", ""}})
	w.write(keyPerson("pp", "m2"))
	w.expect("a person restored", [][3]string{{"CarePlan", plansOf + "m2", "cp1"}})
	w.write("-CarePlan/cp1")
	w.expect("a plan deleted", [][3]string{{"CarePlan", plansOf + "m2", ""}})
	// Two plans, each in its own transaction, before their person; the
	// person then changed in an element the key does not read, then moved.
	w.write(keyPlan("cp4", "ps"))
	w.write(keyPlan("cp5", "ps"))
	w.write(keyPerson("ps", "m5"))
	w.expect("two plans before their person", [][3]string{{"CarePlan", plansOf + "m5", "cp4 cp5"}})
	w.write(`{"resourceType":"Patient","id":"ps","name":[{"family":"Jones"}],"managingOrganization":{"reference":"Organization/m5"}}`)
	w.expect("the person renamed", [][3]string{{"CarePlan", plansOf + "m5", "cp4 cp5"}})
	w.write(keyPerson("ps", "m6"))
	w.expect("the renamed person moved", [][3]string{
		{"CarePlan", plansOf + "m5", ""},
		{"CarePlan", plansOf + "m6", "cp4 cp5"},
	})
	// One transaction: a plan, its person, the person moved again.
	w.write(keyPlan("cp3", "pr"), keyPerson("pr", "m3"), keyPerson("pr", "m4"))
	w.expect("one transaction", [][3]string{
		{"CarePlan", plansOf + "m3", ""},
		{"CarePlan", plansOf + "m4", "cp3"},
		{"CarePlan", plansOf + "m1&status=active", "cp2"},
	})
}
