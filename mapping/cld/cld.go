// Package cld imports a council's Adult Social Care Client Level Data (CLD)
// return, Release 1 or Release 2, into the shared record: each person's rows
// make or update their Patient, and the short-term service and review events
// make or update the pathway's EpisodeOfCare. Codes are translated through the
// embedded ConceptMaps, persons are matched by NHS number and the council's
// own person identifier, and rows that cannot be matched safely are held for
// review as Tasks.
package cld

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	fm "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"crs/fhir"
	"crs/mapping"
)

// The CLD columns (Release 1 and 2 spell them alike).
var Columns = mapping.Columns{
	Required: []string{"LA_Code", "NHS_Number", "LA_Person_Unique_Identifier", "Gender", "Ethnicity", "Date_of_Birth",
		"Event_Type", "Event_Reference", "Event_Start_Date"},
	Optional: []string{"Reporting_Period_Start_Date", "Reporting_Period_End_Date", "GP_Practice_Code", "Date_of_Death",
		"Client_Type", "Primary_Support_Reason", "Postcode", "Accommodation_Status", "Employment_Status", "Has_Unpaid_Carer",
		"Client_Funding_Status", "Event_End_Date", "Event_Description", "Event_Outcome", "Request_Route_of_Access",
		"Assessment_Type", "Eligible_Needs_Identified", "Method_of_Assessment", "Service_Type", "Service_Component",
		"Delivery_Mechanism", "Provider_CQC_Location_ID", "Review_Reason", "Review_Outcomes_Achieved", "Method_of_Review",
		"Unit_Cost", "Cost_Frequency_Unit_Type", "Planned_units_per_week"},
}

// CQCLocationSystem is the identifier system of CQC location ids, by which a
// care provider's Organization is found from a Service event.
const CQCLocationSystem = "https://www.cqc.org.uk/location"

// Options configures an import.
type Options struct {
	LACode    string // the council's ONS code (e.g. E10000031): rows for another LA are rejected
	BatchRows int    // rows per transaction (default 200)
	DryRun    bool   // validate and map, store nothing
	Encoding  mapping.Encoding
	// Progress, when set, is called after each batch with the rows read so far.
	Progress func(rows int)
}

// row is one valid CLD row, parsed.
type row struct {
	rec       mapping.Record
	nhs       string // valid NHS number, or ""
	laID      string
	gender    fm.Coding
	ethnicity fm.Coding
	dob, dod  string
	district  string
	event     string // request, assessment, service, review (lower case)
	ref       string
	start     string
	end       string
	route     string
	service   *fm.Coding // the pathway service of a Service event; nil: not the pathway's
	exit      *fm.Coding // the exit route of a Review event
	cqc       string
	calls     int    // planned care calls a week of a Service event; -1: none (or not in calls)
	unitsNote string // why Planned_units_per_week gives no calls a day, reported as a warning
}

// Import reads a CLD file from r and brings its rows into the shared record
// through door. A file-level problem (empty, wrong columns) is an error with
// nothing imported; a row's problem is reported in rep and the rest proceeds.
func Import(ctx context.Context, door mapping.Door, run *mapping.Run, r io.Reader, opt Options, rep *mapping.Report) error {
	if opt.BatchRows <= 0 {
		opt.BatchRows = 200
	}
	if opt.LACode == "" {
		return errors.New("the council's LA code (ONS, e.g. E10000031) is required: rows for another local authority are refused")
	}
	cr, err := mapping.NewCSVReader(r, opt.Encoding, Columns)
	if err != nil {
		return err
	}
	im := &importer{door: door, run: run, opt: opt, rep: rep, header: cr.Header, orgs: map[string]string{},
		pipe: &mapping.Pipeline{Door: door, DryRun: opt.DryRun, Report: rep}}
	err = mapping.Batches(cr, rep, opt.BatchRows, im.parse, func(rows []*row) error { return im.batch(ctx, rows) }, opt.Progress)
	if werr := im.pipe.Wait(); err == nil {
		err = werr
	}
	return err
}

type importer struct {
	door   mapping.Door
	run    *mapping.Run
	opt    Options
	rep    *mapping.Report
	header []string
	events mapping.Seen      // event references (duplicates in the file)
	orgs   map[string]string // CQC location → Organization/id
	pipe   *mapping.Pipeline // writes a batch while the next is mapped
}

// date reads a CLD date: YYYY-MM-DD or DD/MM/YYYY.
func date(s string) (string, bool) {
	for _, layout := range []string{"2006-01-02", "02/01/2006", "2/1/2006"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.Format("2006-01-02"), true
		}
	}
	return "", false
}

func (im *importer) cm(name string) string { return im.run.System("/ConceptMap/" + name) }

// parse checks and translates one record. A nil row and nil error: nothing
// to do (reported as skipped).
func (im *importer) parse(rec mapping.Record) (*row, *mapping.RowError) {
	line := rec.Line
	bad := func(field, format string, args ...any) *mapping.RowError {
		return &mapping.RowError{Line: line, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	rw := &row{rec: rec, calls: -1}
	if la := rec.Get("LA_Code"); !strings.EqualFold(la, im.opt.LACode) {
		return nil, bad("LA_Code", "the row is for local authority %q, not this council's %s", la, im.opt.LACode)
	}
	if n := strings.ReplaceAll(rec.Get("NHS_Number"), " ", ""); n != "" {
		if ok, why := mapping.ValidNHSNumber(n); !ok {
			return nil, bad("NHS_Number", "%s", why)
		}
		rw.nhs = n
	}
	rw.laID = rec.Get("LA_Person_Unique_Identifier")
	if rw.laID == "" && rw.nhs == "" {
		return nil, bad("LA_Person_Unique_Identifier", "the row names nobody: no NHS number and no LA person identifier")
	}
	var ok bool
	if rw.dob, ok = date(rec.Get("Date_of_Birth")); !ok {
		return nil, bad("Date_of_Birth", "%q is not a date (YYYY-MM-DD or DD/MM/YYYY)", rec.Get("Date_of_Birth"))
	}
	if s := rec.Get("Date_of_Death"); s != "" {
		if rw.dod, ok = date(s); !ok {
			return nil, bad("Date_of_Death", "%q is not a date (YYYY-MM-DD or DD/MM/YYYY)", s)
		}
	}
	for _, f := range []struct {
		col, cm string
		dst     *fm.Coding
	}{{"Gender", "cld-gender", &rw.gender}, {"Ethnicity", "cld-ethnicity", &rw.ethnicity}} {
		c, found, rerr := im.run.Translate(line, f.col, im.cm(f.cm), rec.Get(f.col))
		if rerr != nil {
			return nil, rerr
		}
		if !found {
			return nil, bad(f.col, "code %q has no target in ConceptMap %s", rec.Get(f.col), im.cm(f.cm))
		}
		*f.dst = c
	}
	if pc := strings.ToUpper(rec.Get("Postcode")); pc != "" {
		rw.district = strings.Fields(pc)[0]
		if len(rw.district) > 4 {
			return nil, bad("Postcode", "%q is not a postcode or postcode district", pc)
		}
	}
	rw.event = strings.ToLower(rec.Get("Event_Type"))
	rw.ref = rec.Get("Event_Reference")
	if rw.ref == "" {
		return nil, bad("Event_Reference", "the event has no reference")
	}
	if first, dup := im.events.Add(rw.ref, line); dup {
		return nil, bad("Event_Reference", "event reference %q repeats the one on line %d", rw.ref, first)
	}
	if rw.start, ok = date(rec.Get("Event_Start_Date")); !ok {
		return nil, bad("Event_Start_Date", "%q is not a date (YYYY-MM-DD or DD/MM/YYYY)", rec.Get("Event_Start_Date"))
	}
	if s := rec.Get("Event_End_Date"); s != "" {
		if rw.end, ok = date(s); !ok {
			return nil, bad("Event_End_Date", "%q is not a date (YYYY-MM-DD or DD/MM/YYYY)", s)
		}
		if rw.end < rw.start {
			return nil, bad("Event_End_Date", "the event ends (%s) before it starts (%s)", rw.end, rw.start)
		}
	}
	switch rw.event {
	case "request":
		rw.route = rec.Get("Request_Route_of_Access")
	case "assessment":
	case "service":
		comp := rec.Get("Service_Component")
		if comp == "" {
			comp = rec.Get("Service_Type")
		}
		c, found, rerr := im.run.Translate(line, "Service_Component", im.cm("cld-service-component"), comp)
		if rerr != nil {
			return nil, rerr
		}
		if found {
			rw.service = &c
			rw.cqc = rec.Get("Provider_CQC_Location_ID")
			if rw.cqc == "" {
				return nil, bad("Provider_CQC_Location_ID", "a short-term service event needs the provider's CQC location")
			}
		}
		if rerr := im.plannedCalls(rw, rec); rerr != nil {
			return nil, rerr
		}
	case "review":
		if out := rec.Get("Event_Outcome"); out != "" {
			c, found, rerr := im.run.Translate(line, "Event_Outcome", im.cm("cld-review-outcome"), out)
			if rerr != nil {
				return nil, rerr
			}
			if found {
				rw.exit = &c
			}
		}
	default:
		return nil, bad("Event_Type", "%q is not an event type: Request, Assessment, Service or Review", rec.Get("Event_Type"))
	}
	return rw, nil
}

// person is one Patient a batch touches, with the episodes it may change.
type person struct {
	patient  *mapping.State
	episodes []*mapping.State
	rows     []*row
	sources  map[*mapping.State][]mapping.SourceRow
}

// clone deep-copies a tree, so that a row that fails leaves nothing behind.
func clone(obj fhir.Object) fhir.Object { return mapping.Clone(obj) }

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
