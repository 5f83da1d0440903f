// Package adt applies HL7 v2 ADT messages from acute trusts to the shared
// record: admissions, registrations and transfers (A01, A04, A02) make or move
// the acute Encounter, a discharge (A03) finishes it with its discharge
// destination (through a ConceptMap) and puts the Discharge Ready Date on the
// trust's open referral, demographic updates (A08, A28, A31) change the
// Patient, and cancellations (A11, A13) correct the Encounter in a new version.
// Each message is one transaction through the engine, as the sending trust's
// principal, with a Provenance naming the sending facility and the message
// control id; a control id already recorded is acknowledged again without
// storing anything.
package adt

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"crs/auth"
	"crs/fhir"
	"crs/fhir/engine"
	"crs/mapping"
	"crs/mapping/hl7v2"
	"crs/profiles"
)

// Config says which sending facilities are accepted and how their messages
// are read.
type Config struct {
	// Facilities maps a sending facility (MSH-4, first component) to the ODS
	// code of the trust it belongs to. Messages from other facilities are
	// rejected (AR).
	Facilities map[string]string
	// DischargeReadyDate is the field holding the Discharge Ready Date
	// (default PV2-9, "expected discharge date").
	DischargeReadyDate hl7v2.Path
	// Base is the canonical base of the pathway's own systems.
	Base     string
	Profiles *profiles.Set
	// Location is the time zone of times sent without an offset (default Europe/London).
	Location *time.Location
}

// DefaultDischargeReadyDate is where the Discharge Ready Date is read unless
// configured otherwise.
var DefaultDischargeReadyDate = hl7v2.Path{Segment: "PV2", Field: 9, Comp: 1, Sub: 1}

// Importer applies ADT messages through the engine.
type Importer struct {
	Engine *engine.Engine
	Config Config

	mu   sync.Mutex
	orgs map[string]mapping.Current // ODS code → Organization
}

// Result is what became of one message: the acknowledgement code, the error
// (nil when accepted), whether it had been received before, what was written,
// and a note for MSA-3 (e.g. a Discharge Ready Date with no referral to carry it).
type Result struct {
	Code      string
	Err       *hl7v2.Error
	Duplicate bool
	Written   []string // Type/id/_history/n
	Note      string
}

// Supported is the trigger events the importer applies.
var Supported = map[string]bool{"A01": true, "A05": true, "A02": true, "A03": true, "A04": true, "A08": true, "A11": true, "A13": true, "A28": true, "A31": true, "A12": true, "A40": true}

// Systems of the identifiers the importer writes, under the canonical base.
const (
	hospitalNumberPath = "/Id/hospital-number/" // + ODS code
	visitNumberPath    = "/Id/hospital-visit-number/"
	messagePath        = "/Id/hl7v2-message/"
	dischargeMapPath   = "/ConceptMap/hl7v2-discharge-destination"
	drdExtensionPath   = "/StructureDefinition/Extension-CRS-DischargeReadyDate"
	verificationURL    = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
	verificationSystem = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"
)

func (im *Importer) system(path string) string { return strings.TrimRight(im.Config.Base, "/") + path }

// Process applies one message (its bytes as received) and returns the ACK to
// send back with the result. It never panics on input and never stores half a
// message: all writes of a message are one transaction.
func (im *Importer) Process(ctx context.Context, data []byte) ([]byte, Result) {
	m, res := im.process(ctx, data)
	ctl := "ACK-" + fmt.Sprint(time.Now().UnixNano())
	ack := hl7v2.ACK(m, res.Code, res.Err, res.Note, ctl, time.Now())
	return ack, res
}

func reject(code, seg string, field int, reason string) Result {
	return Result{Code: hl7v2.AR, Err: &hl7v2.Error{Segment: seg, Seq: 1, Field: field, Code: code, Reason: reason}}
}

func fail(seg string, field int, code, format string, args ...any) *hl7v2.Error {
	return &hl7v2.Error{Segment: seg, Seq: 1, Field: field, Code: code, Reason: fmt.Sprintf(format, args...)}
}

func (im *Importer) process(ctx context.Context, data []byte) (*hl7v2.Message, Result) {
	m, err := hl7v2.Parse(data)
	if err != nil {
		var he *hl7v2.Error
		if !errors.As(err, &he) {
			he = &hl7v2.Error{Code: hl7v2.CodeInternal, Reason: err.Error()}
		}
		code := hl7v2.AE
		if he.Segment == "" || he.Segment == "MSH" {
			code = hl7v2.AR
		}
		return nil, Result{Code: code, Err: he}
	}
	h := m.Segment("MSH")
	if m.ControlID() == "" {
		return m, reject(hl7v2.CodeRequiredMissing, "MSH", 10, "no message control id")
	}
	typ, event := m.Type()
	if typ != "ADT" {
		return m, reject(hl7v2.CodeUnsupportedType, "MSH", 9, fmt.Sprintf("message type %q is not accepted: only ADT", typ))
	}
	if !Supported[event] {
		return m, reject(hl7v2.CodeUnsupportedEvent, "MSH", 9, fmt.Sprintf("trigger event %q is not accepted (A01, A02, A03, A04, A05, A08, A11, A12, A13, A28, A31, A40)", event))
	}
	facility := h.Value(4, 1)
	ods, ok := im.Config.Facilities[facility]
	if !ok {
		return m, reject(hl7v2.CodeUnknownKey, "MSH", 4, fmt.Sprintf("sending facility %q is not configured", facility))
	}
	msgID := identifier{System: im.system(messagePath + ods), Value: m.ControlID()}
	return m, im.applyInTx(ctx, m, ods, event, facility, msgID)
}

var duplicateResult = Result{Code: hl7v2.AA, Duplicate: true, Note: "duplicate control id: already applied, nothing stored"}

// Principal is the principal a trust's messages are applied as: a backend
// service of role acute-trust for the ODS code, with every system scope (the
// access policy bounds it).
func Principal(ods string) *auth.Principal {
	return &auth.Principal{ClientID: "hl7v2-" + ods, Org: ods, Roles: []string{"acute-adt", "acute-trust"}, Scopes: auth.ParseScopes("system/*.cruds")}
}

func (im *Importer) organization(ctx context.Context, door mapping.Door, ods string) (mapping.Current, error) {
	im.mu.Lock()
	c, ok := im.orgs[ods]
	im.mu.Unlock()
	if ok {
		return c, nil
	}
	c, err := mapping.FindOrganization(ctx, door, ods)
	if err != nil {
		return c, err
	}
	im.mu.Lock()
	if im.orgs == nil {
		im.orgs = map[string]mapping.Current{}
	}
	im.orgs[ods] = c
	im.mu.Unlock()
	return c, nil
}

// describe is an engine error as the reason and code of an ERR segment.
func describe(err error) *hl7v2.Error {
	fe := fhir.AsError(err)
	code := hl7v2.CodeInternal
	switch fe.Kind {
	case fhir.Invalid, fhir.Unprocessable:
		code = hl7v2.CodeDataType
	case fhir.Conflict:
		code = hl7v2.CodeUnknownKey
	}
	return &hl7v2.Error{Code: code, Reason: mapping.Describe(err)}
}
