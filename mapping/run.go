package mapping

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	fm "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"crs/fhir"
	"crs/profiles"
)

// Systems of the identifiers and codes the importers write. The pathway's
// own are under the canonical base (profiles.DefaultCanonicalBase) and are
// rewritten with it, like the profiles.
const (
	NHSNumberSystem = "https://fhir.nhs.uk/Id/nhs-number"
	ODSSystem       = "https://fhir.nhs.uk/Id/ods-organization-code"
	TaskTypePath    = "/CodeSystem/crs-task-type"
	// IdentityReview is the Task code of a record held for review.
	IdentityReview = "identity-review"
	// ResponsibleLAURL is the Patient extension naming the responsible local authority.
	ResponsibleLAURLPath = "/StructureDefinition/Extension-CRS-ResponsibleLocalAuthority"
	// StatisticalGeography is the ONS/GSS code system of local authorities.
	StatisticalGeography = "http://statistics.data.gov.uk/id/statistical-geography"
)

// Run is one import: who imports what, when. Every resource it creates or
// changes carries a Provenance naming the run.
type Run struct {
	ID       string    // the run's id (a UUID)
	Source   string    // cld, visits, careplans, therapy
	File     string    // the source file's name
	Org      Current   // the importing organisation's Organization
	ODS      string    // its ODS code
	Time     time.Time // when the run started
	Base     string    // the canonical base of the pathway's systems
	Profiles *profiles.Set

	// The shared parts of the run's Provenances (provenanceBase): a Run
	// serves one import at a time, but a pipelined import builds the
	// Provenances of two batches at once (the one in flight and the next),
	// so the memo is guarded.
	prov struct {
		sync.Mutex
		key  string
		base map[bool]fhir.Object
	}
}

// clone is a run with the same fields and a Provenance memo of its own.
func (r *Run) clone() *Run {
	return &Run{ID: r.ID, Source: r.Source, File: r.File, Org: r.Org, ODS: r.ODS, Time: r.Time, Base: r.Base, Profiles: r.Profiles}
}

// System returns the pathway system with path under the canonical base.
func (r *Run) System(path string) string { return strings.TrimRight(r.Base, "/") + path }

// SourceRow is a source record behind a change: its line and reference.
type SourceRow struct {
	Line int
	Ref  string // the row's own reference (an event reference), if any
}

// orgRef is the literal reference to the importing organisation.
func (r *Run) orgRef() *fm.Reference {
	ref := "Organization/" + r.Org.ID
	return &fm.Reference{Reference: &ref, Display: ptr("ODS " + r.ODS)}
}

func ptr[T any](v T) *T { return &v }

// Ptr returns a pointer to v, for the typed models' optional fields.
func Ptr[T any](v T) *T { return &v }

// Object converts a typed model to the generic tree the engine takes.
func Object(v any) fhir.Object { return toObject(v) }

// Provenance says where a change to target (a reference or a fullUrl of the
// same transaction) came from: the importing organisation (author), the source
// file and its rows (entities), the time and the run.
//
// The parts every Provenance of the run shares are built once from the typed
// model (provenanceBase) and copied; the target and the rows are filled into
// the copy, in the form the typed model gives them (TestProvenanceAsTyped).
// Building each one from the typed model cost about 3% of a visit row's CPU.
func (r *Run) Provenance(target string, rows []SourceRow, created bool) fhir.Object {
	p := Clone(r.provenanceBase(created))
	p["target"] = []any{map[string]any{"reference": target}}
	system := r.System("/Id/import-source/" + r.Source)
	var entities []any
	seen := map[SourceRow]bool{}
	for _, row := range rows {
		if seen[row] {
			continue // several records of one line (a JSON care plan's actions)
		}
		seen[row] = true
		display := fmt.Sprintf("%s file %s line %d", r.Source, r.File, row.Line)
		if row.Ref != "" {
			display += ", record " + row.Ref
		}
		entities = append(entities, map[string]any{
			"role": fm.ProvenanceEntityRoleSource.Code(),
			"what": map[string]any{
				"identifier": map[string]any{"system": system, "value": r.File + "#line=" + strconv.Itoa(row.Line)},
				"display":    display,
			},
		})
	}
	if len(entities) > 0 {
		p["entity"] = entities
	}
	return p
}

// provenanceBase is what every Provenance of the run (created or updated)
// holds besides its target and rows, from the typed model; remembered while
// the run's fields stay as they were.
func (r *Run) provenanceBase(created bool) fhir.Object {
	key := strings.Join([]string{r.Time.UTC().Format(time.RFC3339), r.Source, r.ID, r.Org.ID, r.ODS}, "\x00")
	r.prov.Lock()
	defer r.prov.Unlock()
	if r.prov.key != key {
		r.prov.key = key
		r.prov.base = map[bool]fhir.Object{}
	}
	if b, ok := r.prov.base[created]; ok {
		return b
	}
	op := "UPDATE"
	if created {
		op = "CREATE"
	}
	b := toObject(fm.Provenance{
		Recorded: r.Time.UTC().Format(time.RFC3339),
		Activity: &fm.CodeableConcept{
			Coding: []fm.Coding{{System: ptr("http://terminology.hl7.org/CodeSystem/v3-DataOperation"), Code: ptr(op)}},
			Text:   ptr("crs import " + r.Source + " run " + r.ID),
		},
		Agent: []fm.ProvenanceAgent{{
			Type: &fm.CodeableConcept{Coding: []fm.Coding{{System: ptr("http://terminology.hl7.org/CodeSystem/provenance-participant-type"), Code: ptr("author")}}},
			Who:  *r.orgRef(),
		}},
	})
	r.prov.base[created] = b
	return b
}

// toObject converts a typed model (a resource or a data type) to the generic
// tree the engine takes, numbers kept as json.Number as fhir.Parse keeps them.
func toObject(v any) fhir.Object {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // a typed model always encodes: a programming error
	}
	if t, err := decodeTree(b); err == nil {
		if obj, ok := t.(map[string]any); ok {
			return obj
		}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		panic(err)
	}
	return obj
}

// Held is a row held for review: its problem and the candidate Patients.
type Held struct {
	Line       int
	Problem    string
	Row        []string   // the row's fields, as read
	More       [][]string // the record's further rows (a care plan's), if any
	Header     []string
	Candidates []string // Patient/id
}

// HeldTask is the Task that puts a held row before a person: status
// requested, intent order, code identity-review, the problem as
// businessStatus, the row, source system and line as inputs, and the
// candidate Patients as focus/for. Its identifier is a hash of the source and
// the row, so that importing the same row again finds the same Task.
func (r *Run) HeldTask(h Held) (fhir.Object, string) {
	rows := strings.Join(h.Row, "\x1f")
	for _, more := range h.More {
		rows += "\x1e" + strings.Join(more, "\x1f")
	}
	sum := sha256.Sum256([]byte(r.Source + "\x00" + r.ODS + "\x00" + rows))
	key := hex.EncodeToString(sum[:16])
	idSystem := r.System("/Id/held-row")
	t := fm.Task{
		Identifier:     []fm.Identifier{{System: &idSystem, Value: &key}},
		Status:         fm.TaskStatusRequested,
		Intent:         "order",
		Code:           &fm.CodeableConcept{Coding: []fm.Coding{{System: ptr(r.System(TaskTypePath)), Code: ptr(IdentityReview), Display: ptr("Identity review")}}},
		BusinessStatus: &fm.CodeableConcept{Text: &h.Problem},
		Description: ptr(fmt.Sprintf("A %s record (%s line %d) could not be matched to one person safely: %s. Link it to the right Patient (add its identifiers), or complete this Task with an output naming the Patient, and it is imported again.",
			r.Source, r.File, h.Line, h.Problem)),
		AuthoredOn: ptr(r.Time.UTC().Format(time.RFC3339)),
		Requester:  r.orgRef(),
	}
	if len(h.Candidates) > 0 {
		t.Focus = &fm.Reference{Reference: ptr(h.Candidates[0])}
		t.For = &fm.Reference{Reference: ptr(h.Candidates[0])}
	}
	obj := toObject(t)
	// Task.input by hand: the typed model's TaskInput writes every value[x]
	// (no omitempty on them), which is not valid FHIR.
	var row strings.Builder
	w := csv.NewWriter(&row)
	_ = w.Write(h.Header)
	_ = w.Write(h.Row)
	for _, more := range h.More {
		_ = w.Write(more)
	}
	w.Flush()
	input := []any{
		taskInput("source-row", map[string]any{"valueString": row.String()}),
		taskInput("source-system", map[string]any{"valueString": r.Source + " import by ODS " + r.ODS}),
		taskInput("source-file", map[string]any{"valueString": r.File}),
		taskInput("source-line", map[string]any{"valueInteger": json.Number(strconv.Itoa(h.Line))}),
	}
	for _, c := range h.Candidates {
		input = append(input, taskInput("candidate", map[string]any{"valueReference": map[string]any{"reference": c}}))
	}
	obj["input"] = input
	return obj, idSystem + "|" + key
}

// HeldGroup is the write of a held row: its Task, created once (conditional
// create on the row's hash), however often the row is imported.
func (r *Run) HeldGroup(h Held) Group {
	task, key := r.HeldTask(h)
	return Group{Lines: []int{h.Line}, Held: []Held{h},
		Entries: []Entry{{Method: "POST", URL: "Task", IfNoneExist: "identifier=" + url.QueryEscape(key), Resource: task}}}
}

func taskInput(kind string, value map[string]any) map[string]any {
	value["type"] = map[string]any{"text": kind}
	return value
}

// FindOrganization finds the importing organisation by its ODS code: it must
// be recorded, as Provenance and Tasks name it.
func FindOrganization(ctx context.Context, d Door, ods string) (Current, error) {
	found, err := d.Search(ctx, "Organization", "identifier="+ODSSystem+"|"+ods)
	if err != nil {
		return Current{}, fmt.Errorf("find the importing organisation %s: %w", ods, err)
	}
	switch len(found) {
	case 0:
		return Current{}, fmt.Errorf("no Organization has ODS code %s: record the importing organisation first (its Provenance and Tasks name it)", ods)
	case 1:
		return found[0], nil
	}
	return Current{}, fmt.Errorf("%d Organizations have ODS code %s", len(found), ods)
}

// Summary counts what an import did.
type Summary struct {
	Rows      int // data rows read
	Created   int // resources created
	Updated   int // resources changed
	Unchanged int // resources the rows named whose content was already so
	Held      int // rows held for review
	Rejected  int // rows rejected
	Skipped   int // rows that are not the pathway's (reported, nothing stored)
}

func (s Summary) String() string {
	return fmt.Sprintf("%d rows: %d resources created, %d updated, %d unchanged; %d rows held for review, %d rejected, %d skipped",
		s.Rows, s.Created, s.Updated, s.Unchanged, s.Held, s.Rejected, s.Skipped)
}

// Report writes every row that was not simply imported as a CSV line (line,
// field, outcome, reason) and keeps the summary.
type Report struct {
	Summary
	w     *csv.Writer
	lines [][]string // a Pipeline batch's lines, until it is joined
}

// NewReport writes the report to w (nil: only the summary is kept).
func NewReport(w io.Writer) *Report {
	r := &Report{}
	if w != nil {
		r.w = csv.NewWriter(w)
		_ = r.w.Write([]string{"line", "field", "outcome", "reason"})
	}
	return r
}

// Add records one row's outcome: rejected, held, skipped or warning.
func (r *Report) Add(line int, field, outcome, reason string) {
	switch outcome {
	case "rejected":
		r.Rejected++
	case "held":
		r.Held++
	case "skipped":
		r.Skipped++
	}
	switch {
	case r.w != nil:
		_ = r.w.Write(reportLine(line, field, outcome, reason))
	case r.lines != nil:
		r.lines = append(r.lines, reportLine(line, field, outcome, reason))
	}
}

// Reject records a rejected row.
func (r *Report) Reject(e *RowError) { r.Add(e.Line, e.Field, "rejected", e.Reason) }

// Flush writes out the report.
func (r *Report) Flush() error {
	if r.w == nil {
		return nil
	}
	r.w.Flush()
	return r.w.Error()
}

// Translate maps a partner code through the embedded ConceptMap with url.
// An unknown code is a row error naming the code and the map; a code the map
// says has no target gives ok false and no error.
func (r *Run) Translate(line int, field, mapURL, code string) (fm.Coding, bool, *RowError) {
	cm, found := r.Profiles.ConceptMap(mapURL)
	if !found {
		return fm.Coding{}, false, &RowError{Line: line, Field: field, Reason: "no ConceptMap " + mapURL}
	}
	targets := cm.Translate("", code)
	if len(targets) == 0 {
		return fm.Coding{}, false, &RowError{Line: line, Field: field, Reason: fmt.Sprintf("unknown code %q: ConceptMap %s has no mapping for it", code, mapURL)}
	}
	t := targets[0]
	if t.Unmatched() {
		return fm.Coding{}, false, nil
	}
	c := fm.Coding{System: ptr(t.System), Code: ptr(t.Code)}
	if t.Display != "" {
		c.Display = ptr(t.Display)
	}
	return c, true, nil
}

// ValidNHSNumber reports whether s is a ten-digit NHS number with a correct
// Modulus 11 check digit, and why not.
func ValidNHSNumber(s string) (bool, string) { return profiles.ValidNHSNumber(s) }
