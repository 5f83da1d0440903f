package export

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"crs/audit"
	"crs/auth"
	"crs/fhir"
	"crs/fhir/engine"
)

// Defaults.
const (
	DefaultExpiry       = time.Hour
	DefaultMaxFileBytes = 64 << 20
	retryAfterSeconds   = 2
)

// Config configures a Manager.
type Config struct {
	Engine       *engine.Engine
	Dir          string        // where jobs and their files live (created)
	Base         string        // the FHIR base URL, e.g. http://127.0.0.1:8080/fhir
	Expiry       time.Duration // how long a finished job's files are kept (DefaultExpiry)
	MaxFileBytes int64         // an NDJSON file is closed and a new one begun past this size
	Logger       *slog.Logger
	Now          func() time.Time
}

// The states of a job.
const (
	stateRunning   = "running"
	stateDone      = "done"
	stateFailed    = "failed"
	stateCancelled = "cancelled"
)

// File is one NDJSON file of a finished job.
type File struct {
	Type  string `json:"type"`
	Name  string `json:"name"`
	Count int    `json:"count"`
}

// job is an export job as kept in <dir>/<id>/job.json.
type job struct {
	ID              string          `json:"id"`
	Owner           string          `json:"owner"`
	Principal       *auth.Principal `json:"principal"`
	Request         Request         `json:"request"`
	State           string          `json:"state"`
	Message         string          `json:"message,omitempty"`
	TransactionTime time.Time       `json:"transactionTime"`
	Expires         time.Time       `json:"expires,omitempty"`
	Output          []File          `json:"output,omitempty"`
	Deleted         []File          `json:"deleted,omitempty"`
	Errors          []File          `json:"errors,omitempty"`
	Done            int             `json:"done"` // types finished, for X-Progress

	cancel context.CancelFunc
	finish chan struct{}
}

// Manager runs export jobs.
type Manager struct {
	eng    *engine.Engine
	dir    string
	base   string
	expiry time.Duration
	max    int64
	log    *slog.Logger
	now    func() time.Time

	mu   sync.Mutex
	jobs map[string]*job
	wg   sync.WaitGroup
	stop chan struct{}
	// gate, when set (by tests), is received from before a job starts its
	// work, so that a test can see a job running.
	gate chan struct{}
}

// New opens the job directory, resumes the jobs a restart interrupted (they
// run again from the start, with a new transaction time, under the principal
// that asked) and starts the sweeper that removes expired jobs.
func New(cfg Config) (*Manager, error) {
	m := &Manager{eng: cfg.Engine, dir: cfg.Dir, base: strings.TrimRight(cfg.Base, "/"), expiry: cfg.Expiry, max: cfg.MaxFileBytes,
		log: cfg.Logger, now: cfg.Now, jobs: map[string]*job{}, stop: make(chan struct{})}
	if m.expiry <= 0 {
		m.expiry = DefaultExpiry
	}
	if m.max <= 0 {
		m.max = DefaultMaxFileBytes
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return nil, fmt.Errorf("export directory: %w", err)
	}
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		return nil, fmt.Errorf("export directory: %w", err)
	}
	for _, de := range entries {
		if !de.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(m.dir, de.Name(), "job.json"))
		if err != nil {
			_ = os.RemoveAll(filepath.Join(m.dir, de.Name())) // a kick-off that never saved its job
			continue
		}
		var j job
		if err := json.Unmarshal(data, &j); err != nil || j.ID != de.Name() {
			m.log.Error("export job unreadable: removed", "job", de.Name())
			_ = os.RemoveAll(filepath.Join(m.dir, de.Name()))
			continue
		}
		m.jobs[j.ID] = &j
		if j.State == stateRunning {
			m.log.Info("export job resumed after a restart", "job", j.ID)
			m.start(&j)
		}
	}
	m.wg.Add(1)
	go m.sweep()
	return m, nil
}

// Close stops the running jobs (they stay "running" on disk and resume at the
// next start) and the sweeper.
func (m *Manager) Close() {
	close(m.stop)
	m.mu.Lock()
	for _, j := range m.jobs {
		if j.cancel != nil {
			j.cancel()
		}
	}
	m.mu.Unlock()
	m.wg.Wait()
}

// ownerOf names the client behind a principal: jobs and files are its only.
func ownerOf(p *auth.Principal) string {
	if p == nil || p.Anonymous {
		return "anonymous"
	}
	return p.Issuer + "|" + p.Subject + "|" + p.ClientID
}

// Kickoff starts an export job for the caller in ctx and returns its status
// URL. A second export by a client with one running is TooManyRequests.
func (m *Manager) Kickoff(ctx context.Context, req Request) (statusURL string, err error) {
	p := auth.PrincipalFrom(ctx)
	rec := audit.Record{Interaction: "operation", Action: "E", Query: "$export " + req.URL}
	defer func() {
		if err != nil {
			rec.Outcome = fhir.AsError(err)
		}
		if aerr := m.eng.Audit(ctx, rec); aerr != nil && err == nil {
			err = fhir.Errorf(fhir.Unavailable, "", "the export could not be recorded in the audit trail, so it is not started; try again later")
		}
	}()
	if req.Level == LevelGroup {
		if _, err := m.eng.Read(ctx, "Group", req.GroupID); err != nil {
			return "", err
		}
		rec.Entities = []string{"Group/" + req.GroupID}
	}
	owner := ownerOf(p)
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, j := range m.jobs {
		if j.Owner == owner && j.State == stateRunning {
			return "", fhir.Errorf(fhir.TooManyRequests, "", "an export of yours (%s) is still running: wait for it, or cancel it with DELETE on its status URL", j.ID)
		}
	}
	j := &job{ID: fhir.NewUUID(), Owner: owner, Principal: p, Request: req, State: stateRunning, TransactionTime: m.now().UTC()}
	if err := os.MkdirAll(filepath.Join(m.dir, j.ID), 0o700); err != nil {
		return "", fhir.InternalError("export", err)
	}
	if err := m.save(j); err != nil {
		return "", fhir.InternalError("export", err)
	}
	m.jobs[j.ID] = j
	rec.Entities = append(rec.Entities, "export/"+j.ID)
	m.start(j)
	return m.base + "/$export-status/" + j.ID, nil
}

// save writes j's job.json atomically (a new file renamed over the old).
func (m *Manager) save(j *job) error {
	data, err := json.Marshal(j)
	if err != nil {
		return err
	}
	tmp := filepath.Join(m.dir, j.ID, "job.json.tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(m.dir, j.ID, "job.json"))
}

// start runs j in the background (m.mu held or not yet shared).
func (m *Manager) start(j *job) {
	ctx, cancel := context.WithCancel(context.Background())
	ctx = auth.WithPrincipal(ctx, j.Principal)
	ctx = engine.WithRequest(ctx, engine.RequestInfo{ID: "export-" + j.ID})
	j.cancel, j.finish = cancel, make(chan struct{})
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(j.finish)
		if m.gate != nil {
			select {
			case <-m.gate:
			case <-ctx.Done():
				return
			}
		}
		m.run(ctx, j)
	}()
}

// run does the export: files for each type, then the manifest's state.
func (m *Manager) run(ctx context.Context, j *job) {
	dir := filepath.Join(m.dir, j.ID)
	// A resumed job starts afresh: drop the files of the interrupted run.
	if entries, err := os.ReadDir(dir); err == nil {
		for _, de := range entries {
			if strings.HasSuffix(de.Name(), ".ndjson") {
				_ = os.Remove(filepath.Join(dir, de.Name()))
			}
		}
	}
	m.mu.Lock()
	j.TransactionTime, j.Output, j.Deleted, j.Errors, j.Done = m.now().UTC(), nil, nil, nil, 0
	req := j.Request
	m.mu.Unlock()

	var patients []string
	switch req.Level {
	case LevelGroup:
		ids, err := m.groupMembers(ctx, req.GroupID)
		if err != nil {
			m.finish(ctx, j, nil, nil, nil, err)
			return
		}
		patients = ids
		if len(req.Patients) > 0 {
			patients = intersect(patients, req.Patients)
		}
	case LevelPatient:
		if len(req.Patients) > 0 {
			patients = req.Patients
		}
	}
	var output, deleted []File
	errs := &ndjsonWriter{dir: dir, typ: "OperationOutcome", prefix: "error", max: m.max}
	for _, t := range req.Types {
		w := &ndjsonWriter{dir: dir, typ: t, prefix: t, max: m.max}
		er := engine.ExportRequest{Type: t, Since: req.Since, Elements: req.Elements, Patients: patients}
		if patients == nil && req.Level == LevelGroup {
			er.Patients = []string{}
		}
		for _, f := range req.TypeFilters[t] {
			ps, _ := engine.ParseQueryString(f) // checked at kick-off
			er.Filters = append(er.Filters, ps)
		}
		_, err := m.eng.ExportType(ctx, er, w.write)
		if cerr := w.close(); err == nil {
			err = cerr
		}
		if ctx.Err() != nil {
			return // cancelled, or the server is stopping (the job resumes at the next start)
		}
		if err != nil {
			fe := fhir.AsError(err)
			if fe.Kind == fhir.Internal || fe.Kind == fhir.Unavailable {
				m.finish(ctx, j, nil, nil, nil, err)
				return
			}
			// A refusal of one type (the caller may not search it) is reported
			// in the manifest's error file; the other types go on.
			oo, _ := fhir.Marshal(fhir.Outcome(prefixIssues(fe.Issues, "$export of "+t+": ")))
			if werr := errs.write(oo); werr != nil {
				m.finish(ctx, j, nil, nil, nil, werr)
				return
			}
		}
		output = append(output, w.files...)
		if !req.Since.IsZero() {
			dw := &ndjsonWriter{dir: dir, typ: "Bundle", prefix: "deleted-" + t, max: m.max}
			_, derr := m.eng.ExportDeleted(ctx, t, req.Since, func(id string, when time.Time) error {
				b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
					map[string]any{"request": map[string]any{"method": "DELETE", "url": t + "/" + id}},
				}})
				return dw.write(b)
			})
			if cerr := dw.close(); derr == nil {
				derr = cerr
			}
			if derr != nil && fhir.AsError(derr).Kind != fhir.Forbidden {
				m.finish(ctx, j, nil, nil, nil, derr)
				return
			}
			if derr != nil {
				oo, _ := fhir.Marshal(fhir.Outcome([]fhir.Issue{{Severity: fhir.SeverityInformation, Code: "informational",
					Diagnostics: "deletions of " + t + " since _since are not listed: they are reported only to callers who may see every " + t}}))
				if werr := errs.write(oo); werr != nil {
					m.finish(ctx, j, nil, nil, nil, werr)
					return
				}
			}
			deleted = append(deleted, dw.files...)
		}
		m.mu.Lock()
		j.Done++
		m.mu.Unlock()
	}
	if err := errs.close(); err != nil {
		m.finish(ctx, j, nil, nil, nil, err)
		return
	}
	m.finish(ctx, j, output, deleted, errs.files, nil)
}

func prefixIssues(issues []fhir.Issue, prefix string) []fhir.Issue {
	out := make([]fhir.Issue, len(issues))
	for i, is := range issues {
		is.Diagnostics = prefix + is.Diagnostics
		out[i] = is
	}
	return out
}

// finish records the end of a job (done, or failed with err) durably and in
// the audit trail.
func (m *Manager) finish(ctx context.Context, j *job, output, deleted, errs []File, err error) {
	rec := audit.Record{Interaction: "operation", Action: "E", Query: "$export complete " + j.Request.URL, Entities: []string{"export/" + j.ID}}
	m.mu.Lock()
	if err != nil {
		j.State, j.Message = stateFailed, fhir.AsError(err).Error()
		rec.Outcome = fhir.AsError(err)
		if fhir.AsError(err).Kind == fhir.Internal {
			m.log.Error("export job failed", "job", j.ID, "error", err.Error())
			j.Message = "the export failed on the server; start a new one"
		}
	} else {
		j.State, j.Output, j.Deleted, j.Errors = stateDone, output, deleted, errs
		for _, f := range output {
			rec.Entities = append(rec.Entities, "export/"+j.ID+"/"+f.Name)
		}
	}
	j.Expires = m.now().Add(m.expiry).UTC()
	serr := m.save(j)
	m.mu.Unlock()
	if serr != nil {
		m.log.Error("export job state not saved", "job", j.ID, "error", serr.Error())
	}
	ctx = context.WithoutCancel(ctx)
	if aerr := m.eng.Audit(ctx, rec); aerr != nil {
		m.log.Error("export completion not audited", "job", j.ID, "error", aerr.Error())
	}
}

// groupMembers reads the Group (as the caller) and returns its Patient members.
func (m *Manager) groupMembers(ctx context.Context, id string) ([]string, error) {
	v, err := m.eng.Read(ctx, "Group", id)
	if err != nil {
		return nil, err
	}
	var g struct {
		Member []struct {
			Entity struct {
				Reference string `json:"reference"`
			} `json:"entity"`
			Inactive bool `json:"inactive"`
		} `json:"member"`
	}
	if err := json.Unmarshal(v.Body, &g); err != nil {
		return nil, fhir.InternalError("export", err)
	}
	out := []string{}
	for _, mem := range g.Member {
		if mem.Inactive {
			continue
		}
		if id, ok := strings.CutPrefix(mem.Entity.Reference, "Patient/"); ok && fhir.ValidID(id) {
			out = append(out, id)
		}
	}
	return out, nil
}

func intersect(a, b []string) []string {
	in := map[string]bool{}
	for _, x := range b {
		in[x] = true
	}
	out := []string{}
	for _, x := range a {
		if in[x] {
			out = append(out, x)
		}
	}
	return out
}

// Status is a job's state as the status endpoint reports it.
type Status struct {
	Running  bool
	Progress string         // X-Progress while running
	Manifest map[string]any // when done
	Expires  time.Time
}

// errNoJob is the one answer for a job that does not exist, has expired or is
// another client's: a refusal reveals nothing.
func errNoJob(id string) error {
	return fhir.Errorf(fhir.NotFound, "", "there is no export job %q (it may have expired or been cancelled)", id)
}

// lookup returns the caller's job id (m.mu held).
func (m *Manager) lookup(ctx context.Context, id string) (*job, error) {
	j, ok := m.jobs[id]
	if !ok || j.Owner != ownerOf(auth.PrincipalFrom(ctx)) || j.State == stateCancelled || (!j.Expires.IsZero() && m.now().After(j.Expires)) {
		return nil, errNoJob(id)
	}
	return j, nil
}

// Status answers the status endpoint for the caller's job id.
func (m *Manager) Status(ctx context.Context, id string) (Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, err := m.lookup(ctx, id)
	if err != nil {
		return Status{}, err
	}
	switch j.State {
	case stateRunning:
		pct := 0
		if n := len(j.Request.Types); n > 0 {
			pct = j.Done * 100 / n
		}
		return Status{Running: true, Progress: strconv.Itoa(pct) + "% (" + strconv.Itoa(j.Done) + " of " + strconv.Itoa(len(j.Request.Types)) + " types)"}, nil
	case stateFailed:
		return Status{}, fhir.Errorf(fhir.Internal, "", "the export failed: %s", j.Message)
	}
	files := func(fs []File) []any {
		out := []any{}
		for _, f := range fs {
			out = append(out, map[string]any{"type": f.Type, "url": m.base + "/$export-file/" + j.ID + "/" + f.Name, "count": f.Count})
		}
		return out
	}
	man := map[string]any{
		"transactionTime":     j.TransactionTime.Format(time.RFC3339Nano),
		"request":             j.Request.URL,
		"requiresAccessToken": true,
		"output":              files(j.Output),
		"error":               files(j.Errors),
	}
	if !j.Request.Since.IsZero() {
		man["deleted"] = files(j.Deleted)
	}
	return Status{Manifest: man, Expires: j.Expires}, nil
}

// Cancel cancels the caller's job id and removes its files.
func (m *Manager) Cancel(ctx context.Context, id string) error {
	m.mu.Lock()
	j, err := m.lookup(ctx, id)
	if err != nil {
		m.mu.Unlock()
		return err
	}
	if j.cancel != nil {
		j.cancel()
	}
	fin := j.finish
	j.State = stateCancelled
	m.mu.Unlock()
	if fin != nil {
		<-fin
	}
	m.mu.Lock()
	delete(m.jobs, id)
	m.mu.Unlock()
	if err := os.RemoveAll(filepath.Join(m.dir, id)); err != nil {
		return fhir.InternalError("export", err)
	}
	_ = m.eng.Audit(ctx, audit.Record{Interaction: "operation", Action: "D", Query: "$export cancel", Entities: []string{"export/" + id}})
	return nil
}

// File returns the path of one of the caller's job's files, audited as a
// download.
func (m *Manager) File(ctx context.Context, id, name string) (path string, err error) {
	rec := audit.Record{Interaction: "operation", Action: "R", Query: "$export download", Entities: []string{"export/" + id + "/" + name}}
	defer func() {
		if err != nil {
			rec.Outcome = fhir.AsError(err)
		}
		if aerr := m.eng.Audit(ctx, rec); aerr != nil && err == nil {
			err = fhir.Errorf(fhir.Unavailable, "", "the download could not be recorded in the audit trail, so it is not served; try again later")
		}
	}()
	m.mu.Lock()
	defer m.mu.Unlock()
	j, err := m.lookup(ctx, id)
	if err != nil {
		return "", err
	}
	if j.State == stateDone {
		for _, fs := range [][]File{j.Output, j.Deleted, j.Errors} {
			for _, f := range fs {
				if f.Name == name {
					return filepath.Join(m.dir, id, name), nil
				}
			}
		}
	}
	return "", fhir.Errorf(fhir.NotFound, "", "export job %q has no file %q", id, name)
}

// sweep removes expired jobs and their files, once a minute.
func (m *Manager) sweep() {
	defer m.wg.Done()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.Sweep()
		}
	}
}

// Sweep removes the finished jobs whose files have expired.
func (m *Manager) Sweep() {
	m.mu.Lock()
	var gone []string
	for id, j := range m.jobs {
		if j.State != stateRunning && !j.Expires.IsZero() && m.now().After(j.Expires) {
			gone = append(gone, id)
			delete(m.jobs, id)
		}
	}
	m.mu.Unlock()
	sort.Strings(gone)
	for _, id := range gone {
		if err := os.RemoveAll(filepath.Join(m.dir, id)); err != nil {
			m.log.Error("expired export not removed", "job", id, "error", err.Error())
		}
	}
}

// ndjsonWriter writes one type's NDJSON files, starting a new one past max bytes.
type ndjsonWriter struct {
	dir, typ, prefix string
	max              int64
	files            []File
	f                *os.File
	bw               *bufio.Writer
	size             int64
}

func (w *ndjsonWriter) write(body []byte) error {
	if w.f != nil && w.size+int64(len(body))+1 > w.max {
		if err := w.close(); err != nil {
			return err
		}
	}
	if w.f == nil {
		name := w.prefix + "-" + strconv.Itoa(len(w.files)+1) + ".ndjson"
		f, err := os.OpenFile(filepath.Join(w.dir, name), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
		if err != nil {
			return fhir.InternalError("export", err)
		}
		w.f, w.bw, w.size = f, bufio.NewWriterSize(f, 1<<16), 0
		w.files = append(w.files, File{Type: w.typ, Name: name})
	}
	if _, err := w.bw.Write(body); err != nil {
		return fhir.InternalError("export", err)
	}
	if err := w.bw.WriteByte('\n'); err != nil {
		return fhir.InternalError("export", err)
	}
	w.size += int64(len(body)) + 1
	w.files[len(w.files)-1].Count++
	return nil
}

// close flushes and syncs the open file, if any.
func (w *ndjsonWriter) close() error {
	if w.f == nil {
		return nil
	}
	f := w.f
	w.f = nil
	err := errors.Join(w.bw.Flush(), f.Sync(), f.Close())
	if err != nil {
		return fhir.InternalError("export", err)
	}
	return nil
}
