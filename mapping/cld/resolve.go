package cld

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"crs/fhir"
	"crs/mapping"
)

// Resolved is the businessStatus text of a held-for-review Task whose row has
// been imported again after a person resolved it.
const Resolved = "re-imported"

// Resolve re-processes the rows held for review that a person has resolved:
// Tasks of this organisation with code identity-review, status completed and
// an output naming the Patient (valueReference). The row's identifiers are
// linked to that Patient (with a Provenance), the Task is marked re-imported
// (businessStatus), and the row is imported again as if it had just been
// read. A Task completed without a Patient is reported and left alone.
func Resolve(ctx context.Context, door mapping.Door, run *mapping.Run, opt Options, rep *mapping.Report) error {
	q := "code=" + url.QueryEscape(run.System(mapping.TaskTypePath)+"|"+mapping.IdentityReview) +
		"&status=completed&requester=Organization/" + run.Org.ID + "&_count=500"
	tasks, err := door.Search(ctx, "Task", q)
	if err != nil {
		return fmt.Errorf("find resolved Tasks: %w", err)
	}
	for _, task := range tasks {
		if bs, _ := task.Obj["businessStatus"].(map[string]any); bs != nil && strings.HasPrefix(fmt.Sprint(bs["text"]), Resolved) {
			continue
		}
		if err := resolveTask(ctx, door, run, opt, rep, task); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			rep.Add(0, "Task/"+task.ID, "rejected", err.Error())
		}
	}
	return nil
}

// taskInputs reads a held Task's inputs by their type text.
func taskInputs(obj fhir.Object) (row string, line int) {
	list, _ := obj["input"].([]any)
	for _, x := range list {
		m, _ := x.(map[string]any)
		typ, _ := m["type"].(map[string]any)
		switch typ["text"] {
		case "source-row":
			row, _ = m["valueString"].(string)
		case "source-line":
			line, _ = strconv.Atoi(fmt.Sprint(m["valueInteger"]))
		}
	}
	return row, line
}

// taskPatient is the Patient a completed Task's output names.
func taskPatient(obj fhir.Object) string {
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

func resolveTask(ctx context.Context, door mapping.Door, run *mapping.Run, opt Options, rep *mapping.Report, task mapping.Current) error {
	pid := taskPatient(task.Obj)
	if pid == "" {
		return errors.New("completed without an output naming the Patient (output.valueReference): nothing to re-import")
	}
	src, line := taskInputs(task.Obj)
	cr, err := mapping.NewCSVReader(strings.NewReader(src), mapping.UTF8, Columns)
	if err != nil {
		return fmt.Errorf("the held row cannot be read: %v", err)
	}
	rec, err := cr.Next()
	if err != nil {
		return fmt.Errorf("the held row cannot be read: %v", err)
	}
	rec.Line = line
	im := &importer{door: door, run: run, opt: opt, rep: rep, header: cr.Header, orgs: map[string]string{}}
	rw, rerr := im.parse(rec)
	if rerr != nil {
		return rerr
	}
	found, err := door.Search(ctx, "Patient", "_id="+url.QueryEscape(pid))
	if err != nil {
		return err
	}
	if len(found) != 1 {
		return fmt.Errorf("the Task names Patient/%s, which this organisation cannot see or which does not exist", pid)
	}
	pat := mapping.NewState(found[0], "Patient")
	if rw.nhs != "" {
		if others := mapping.Identifiers(pat.Obj, mapping.NHSNumberSystem); len(others) > 0 && !mapping.HasIdentifier(pat.Obj, mapping.NHSNumberSystem, rw.nhs) {
			return fmt.Errorf("the Task names Patient/%s, whose NHS number is %s, not the row's %s", pid, strings.Join(others, ", "), rw.nhs)
		}
		mapping.AddIdentifier(pat.Obj, mapping.NHSNumberSystem, rw.nhs)
	}
	if rw.laID != "" {
		mapping.AddIdentifier(pat.Obj, im.laSystem(), rw.laID)
	}
	done := task.Obj
	done["id"] = task.ID
	done["businessStatus"] = map[string]any{"text": Resolved + ": linked to Patient/" + pid + " by run " + run.ID}
	entries := []mapping.Entry{{Method: "PUT", URL: "Task/" + task.ID, IfMatch: task.Version, Resource: done}}
	if pat.Changed() {
		pat.Obj["id"] = pat.ID
		entries = append(entries,
			mapping.Entry{Method: "PUT", URL: "Patient/" + pid, IfMatch: pat.Version, Resource: pat.Obj},
			mapping.Entry{Method: "POST", URL: "Provenance", Resource: run.Provenance("Patient/"+pid, []mapping.SourceRow{{Line: line, Ref: rw.ref}}, false)})
	}
	if !opt.DryRun {
		if _, err := door.Transaction(ctx, entries); err != nil {
			return fmt.Errorf("link the row to Patient/%s: %s", pid, mapping.Describe(err))
		}
	}
	rep.Rows++
	return im.batch(ctx, []*row{rw})
}
