package mapping

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
)

// Resolved is the businessStatus text of a held-for-review Task whose row has
// been imported again after a person resolved it, and the code of the tag
// (system TaskStatePath under the canonical base) it then carries.
const Resolved = "re-imported"

// TaskStatePath is the system of the tag that marks a held-for-review Task
// re-imported.
const TaskStatePath = "/CodeSystem/crs-task-state"

// HeldSource is what ResolveHeld needs of one importer: how its rows name a
// person, and how to import a held row again.
type HeldSource struct {
	Columns     Columns             // the source's columns, to read the held row
	LocalSystem string              // the system of the source's own person reference
	Person      func(Record) Person // the person a row names (NHS number valid or "")
	// Reimport imports the held rows (CSV: the header, then the rows at their
	// original line numbers) under run, into rep.
	Reimport func(ctx context.Context, run *Run, csv io.Reader, rep *Report) error
}

// ResolveHeld re-processes the rows of this source held for review that a
// person has resolved: Tasks requested by this organisation with code
// identity-review, the source's source-system input, status completed and an
// output naming the Patient (valueReference). The row's identifiers (NHS
// number, the source's own person reference, which is added beside any other
// the Patient has: the person said it is theirs) are linked to that Patient
// (with a Provenance), the Task is marked re-imported (businessStatus), and the
// row is imported again as if it had just been read, at its original line.
// A Task completed without a Patient, or naming one whose NHS number differs
// from the row's, is reported and left alone.
func ResolveHeld(ctx context.Context, door Door, run *Run, src HeldSource, dryRun bool, rep *Report) error {
	// Tasks re-imported already carry the tag: they are not found again, so
	// however many accumulate, the unprocessed ones fit in a page.
	q := "code=" + url.QueryEscape(run.System(TaskTypePath)+"|"+IdentityReview) +
		"&status=completed&requester=Organization/" + run.Org.ID +
		"&_tag:not=" + url.QueryEscape(run.System(TaskStatePath)+"|"+Resolved) + "&_count=500"
	tasks, err := door.Search(ctx, "Task", q)
	if err != nil {
		return fmt.Errorf("find resolved Tasks: %w", err)
	}
	for _, task := range tasks {
		if bs, _ := task.Obj["businessStatus"].(map[string]any); bs != nil && strings.HasPrefix(fmt.Sprint(bs["text"]), Resolved) {
			continue
		}
		in := heldInputs(task.Obj)
		if !strings.HasPrefix(in.system, run.Source+" import") {
			continue // another importer's row
		}
		if err := resolveTask(ctx, door, run, src, dryRun, rep, task, in); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			rep.Add(0, "Task/"+task.ID, "rejected", err.Error())
		}
	}
	return nil
}

// heldInput is what a held Task's inputs say of its row.
type heldInput struct {
	row, system, file string
	line              int
}

func heldInputs(obj map[string]any) heldInput {
	var in heldInput
	list, _ := obj["input"].([]any)
	for _, x := range list {
		m, _ := x.(map[string]any)
		typ, _ := m["type"].(map[string]any)
		switch typ["text"] {
		case "source-row":
			in.row, _ = m["valueString"].(string)
		case "source-system":
			in.system, _ = m["valueString"].(string)
		case "source-file":
			in.file, _ = m["valueString"].(string)
		case "source-line":
			in.line, _ = strconv.Atoi(fmt.Sprint(m["valueInteger"]))
		}
	}
	return in
}

// taskPatient is the Patient a completed Task's output names.
func taskPatient(obj map[string]any) string {
	list, _ := obj["output"].([]any)
	for _, x := range list {
		m, _ := x.(map[string]any)
		ref, _ := m["valueReference"].(map[string]any)
		if s, _ := ref["reference"].(string); strings.HasPrefix(s, "Patient/") {
			return strings.TrimPrefix(s, "Patient/")
		}
	}
	return ""
}

func resolveTask(ctx context.Context, door Door, run *Run, src HeldSource, dryRun bool, rep *Report, task Current, in heldInput) error {
	pid := taskPatient(task.Obj)
	if pid == "" {
		return errors.New("completed without an output naming the Patient (output.valueReference): nothing to re-import")
	}
	cr, err := NewCSVReader(strings.NewReader(in.row), UTF8, src.Columns)
	if err != nil {
		return fmt.Errorf("the held row cannot be read: %v", err)
	}
	var persons []Person
	for {
		rec, err := cr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("the held row cannot be read: %v", err)
		}
		persons = append(persons, src.Person(rec))
	}
	if len(persons) == 0 {
		return errors.New("the Task holds no row")
	}
	found, err := door.Search(ctx, "Patient", "_id="+url.QueryEscape(pid))
	if err != nil {
		return err
	}
	if len(found) != 1 {
		return fmt.Errorf("the Task names Patient/%s, which this organisation cannot see or which does not exist", pid)
	}
	pat := NewState(found[0], "Patient")
	for _, p := range persons {
		if p.NHS != "" {
			if others := Identifiers(pat.Obj, NHSNumberSystem); len(others) > 0 && !HasIdentifier(pat.Obj, NHSNumberSystem, p.NHS) {
				return fmt.Errorf("the Task names Patient/%s, whose NHS number is %s, not the row's %s", pid, strings.Join(others, ", "), p.NHS)
			}
			AddIdentifier(pat.Obj, NHSNumberSystem, p.NHS)
		}
		if p.Local != "" {
			// A person who names the Patient says the source's reference is
			// theirs too, even beside another one.
			AddIdentifier(pat.Obj, src.LocalSystem, p.Local)
		}
	}
	done := task.Obj
	done["id"] = task.ID
	done["businessStatus"] = map[string]any{"text": Resolved + ": linked to Patient/" + pid + " by run " + run.ID}
	meta, _ := done["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		done["meta"] = meta
	}
	tags, _ := meta["tag"].([]any)
	meta["tag"] = append(tags, map[string]any{"system": run.System(TaskStatePath), "code": Resolved, "display": "Re-imported"})
	entries := []Entry{{Method: "PUT", URL: "Task/" + task.ID, IfMatch: task.Version, Resource: done}}
	if pat.Changed() {
		pat.Obj["id"] = pat.ID
		entries = append(entries,
			Entry{Method: "PUT", URL: "Patient/" + pid, IfMatch: pat.Version, Resource: pat.Obj},
			Entry{Method: "POST", URL: "Provenance", Resource: run.Provenance("Patient/"+pid, []SourceRow{{Line: in.line, Ref: "Task/" + task.ID}}, false)})
	}
	if !dryRun {
		if _, err := door.Transaction(ctx, entries); err != nil {
			return fmt.Errorf("link the row to Patient/%s: %s", pid, Describe(err))
		}
	}
	again := run.clone()
	if in.file != "" {
		again.File = in.file
	}
	return src.Reimport(ctx, again, AtLine(in.row, in.line), rep)
}

// AtLine is a held record's CSV (its header, then its rows) with blank lines
// put before the rows so that they are read at line, where the source file
// had them: the reader skips blank lines, and the report and Provenance name
// the original line.
func AtLine(csvText string, line int) io.Reader {
	header, rows, _ := strings.Cut(csvText, "\n")
	pad := max(line-2, 0)
	return io.MultiReader(strings.NewReader(header+"\n"), strings.NewReader(strings.Repeat("\n", pad)), strings.NewReader(rows))
}

// RowPerson is the person a row names by its NHS number column (kept when
// valid, spaces removed) and its own person reference column.
func RowPerson(rec Record, nhsColumn, localColumn string) Person {
	p := Person{Local: rec.Get(localColumn)}
	if n := strings.ReplaceAll(rec.Get(nhsColumn), " ", ""); n != "" {
		if ok, _ := ValidNHSNumber(n); ok {
			p.NHS = n
		}
	}
	return p
}
