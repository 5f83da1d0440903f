// Package bars receives NHS Booking and Referral Standard (BaRS) referrals:
// a FHIR message Bundle POSTed to $process-message whose MessageHeader has the
// event servicerequest-request, reason new or update, and focus the
// ServiceRequest, with the UK Core Patient, Encounter, Organizations and
// practitioners it names. The message becomes the CRS Referral and its
// people in one transaction through the engine, as the caller (policed and
// audited), with a Provenance keyed on the MessageHeader id: a message
// received again is answered again, from that Provenance, without storing
// anything twice.
package bars

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"crs/fhir"
	"crs/fhir/engine"
	"crs/mapping"
)

// The BaRS vocabulary crs reads and answers with.
const (
	EventSystem   = "https://fhir.nhs.uk/CodeSystem/message-events-bars"
	ReasonSystem  = "https://fhir.nhs.uk/CodeSystem/message-reason-bars"
	EventRequest  = "servicerequest-request"
	EventResponse = "servicerequest-response"
	// Definition is the BaRS MessageDefinition of a referral request.
	Definition = "https://fhir.nhs.uk/MessageDefinition/bars-message-servicerequest-request-referral"
)

// Systems and profiles of what the receiver writes, under the canonical base.
const (
	messagePath      = "/Id/bars-message"
	referralProfile  = "/StructureDefinition/CRS-Referral"
	patientProfile   = "/StructureDefinition/CRS-Patient"
	encounterProfile = "/StructureDefinition/CRS-Encounter"
	careSettingCode  = "892601000000108"
	snomed           = "http://snomed.info/sct"
)

// Response codes of MessageHeader.response.code.
const (
	OK             = "ok"
	TransientError = "transient-error"
	FatalError     = "fatal-error"
)

// Receiver applies BaRS referral messages through the engine.
type Receiver struct {
	Engine *engine.Engine
	// Base is the canonical base of the pathway's own systems and profiles.
	Base string
}

// Reply is the answer to one message: the HTTP status and the response
// message Bundle (MessageHeader.response naming the request, an
// OperationOutcome entry on error).
type Reply struct {
	Status    int
	Bundle    fhir.Object
	Code      string // ok, transient-error, fatal-error
	Duplicate bool   // the message had been received before: nothing stored
	Err       error  // why the message was not accepted (nil when ok)
}

func (r *Receiver) system(path string) string { return strings.TrimRight(r.Base, "/") + path }

// Process applies one message Bundle as the caller in ctx. A body that is not
// a message Bundle with a MessageHeader carrying an id is an error (answered
// with a plain OperationOutcome: there is no message to respond to); every
// other outcome is a response message Bundle.
func (r *Receiver) Process(ctx context.Context, body []byte) (Reply, error) {
	msg, err := parseMessage(body)
	if err != nil {
		return Reply{}, err
	}
	door := &mapping.EngineDoor{Engine: r.Engine} // the caller's principal is in ctx
	msgID := r.system(messagePath) + "|" + msg.id
	dup, err := door.Search(ctx, "Provenance", "entity:identifier="+msgID)
	if err != nil {
		return r.respond(msg, "", time.Now(), err), nil
	}
	if len(dup) > 0 {
		return r.again(msg, dup[0]), nil
	}
	if err := msg.check(); err != nil {
		return r.respond(msg, "", time.Now(), err), nil
	}
	now := time.Now().UTC().Truncate(time.Second)
	entries, src, focus, err := r.entries(ctx, door, msg, now)
	if err != nil {
		return r.respond(msg, "", now, err), nil
	}
	res, err := door.Transaction(ctx, entries)
	if err != nil {
		return r.respond(msg, "", now, inMessage(err, msg, src)), nil
	}
	for i, e := range entries {
		if e.FullURL == focus || (e.Method == "PUT" && e.URL == focus) {
			focus = typeID(res[i].Location)
		}
	}
	return r.respond(msg, focus, now, nil), nil
}

// inMessage says where an error of the transaction is in the message: its
// "Bundle.entry[k]" and "entry k (" name the transaction's entries, which
// src maps to the message's.
func inMessage(err error, msg *message, src []int) error {
	fe := fhir.AsError(err)
	if fe.Kind == fhir.Internal {
		return err
	}
	out := &fhir.Error{Kind: fe.Kind, Op: fe.Op, Err: fe.Err, Issues: make([]fhir.Issue, len(fe.Issues))}
	for i, is := range fe.Issues {
		for k, m := range src {
			tx := "Bundle.entry[" + strconv.Itoa(k) + "]"
			rest, ok := strings.CutPrefix(is.Expression, tx)
			if m < 0 || !ok || (rest != "" && rest[0] != '.') {
				continue
			}
			if r, ok := strings.CutPrefix(rest, ".resource"); ok {
				is.Expression = msg.entries[m].where + r
			} else {
				is.Expression = "Bundle.entry[" + strconv.Itoa(m) + "]" + rest
			}
			if r, ok := strings.CutPrefix(is.Diagnostics, "entry "+strconv.Itoa(k)+" ("); ok {
				is.Diagnostics = "entry " + strconv.Itoa(m) + " of the message (" + r
			}
			break
		}
		out.Issues[i] = is
	}
	return out
}

// typeID is Type/id of a location Type/id/_history/n.
func typeID(loc string) string {
	parts := strings.Split(loc, "/")
	if len(parts) < 2 {
		return loc
	}
	return parts[0] + "/" + parts[1]
}

// respond builds the response message: ok with the referral as focus, or the
// error's code with its OperationOutcome.
func (r *Receiver) respond(msg *message, focus string, at time.Time, err error) Reply {
	if err == nil {
		return Reply{Status: 200, Code: OK, Bundle: r.response(msg, OK, focus, at, nil)}
	}
	fe := fhir.AsError(err)
	code := FatalError
	if fe.Kind == fhir.Internal || fe.Kind == fhir.Unavailable || fe.Kind == fhir.TooCostly {
		code = TransientError
	}
	issues := fe.Issues
	if fe.Kind == fhir.Internal {
		issues = fhir.InternalError("process-message", err).Issues
	}
	return Reply{Status: fe.Kind.Status(), Code: code, Err: err, Bundle: r.response(msg, code, "", at, fhir.Outcome(issues))}
}

// again answers a message received before from its Provenance: the same
// response (ids derived from the request's, time its recording).
func (r *Receiver) again(msg *message, prov mapping.Current) Reply {
	at, _ := time.Parse(time.RFC3339, fmt.Sprint(prov.Obj["recorded"]))
	var focus string
	for _, t := range asList(prov.Obj["target"]) {
		if ref, _ := asMap(t)["reference"].(string); strings.HasPrefix(ref, "ServiceRequest/") {
			focus = ref
		}
	}
	return Reply{Status: 200, Code: OK, Duplicate: true, Bundle: r.response(msg, OK, focus, at, nil)}
}

// response is the response message Bundle.
func (r *Receiver) response(msg *message, code, focus string, at time.Time, outcome map[string]any) fhir.Object {
	ts := at.UTC().Format(time.RFC3339)
	headerID := derivedUUID("header", msg.id)
	hdr := fhir.Object{
		"resourceType": "MessageHeader",
		"id":           headerID,
		"eventCoding":  map[string]any{"system": EventSystem, "code": EventResponse},
		"source":       map[string]any{"name": "crs", "software": "crs", "endpoint": strings.TrimRight(r.Engine.Base(), "/") + "/$process-message"},
		"response":     map[string]any{"identifier": msg.id, "code": code},
	}
	if msg.source != "" {
		hdr["destination"] = []any{map[string]any{"endpoint": msg.source}}
	}
	if focus != "" {
		hdr["focus"] = []any{map[string]any{"reference": focus}}
	}
	entries := []any{map[string]any{"fullUrl": "urn:uuid:" + headerID, "resource": hdr}}
	if outcome != nil {
		ooID := derivedUUID("outcome", msg.id)
		outcome["id"] = ooID
		hdr["response"].(map[string]any)["details"] = map[string]any{"reference": "urn:uuid:" + ooID}
		entries = append(entries, map[string]any{"fullUrl": "urn:uuid:" + ooID, "resource": outcome})
	}
	return fhir.Object{"resourceType": "Bundle", "id": derivedUUID("bundle", msg.id), "type": "message", "timestamp": ts, "entry": entries}
}

// derivedUUID is a name-based UUID of the request's MessageHeader id, so that
// a message received again is answered with the same ids.
func derivedUUID(kind, id string) string {
	sum := sha256.Sum256([]byte("crs-bars-" + kind + "|" + id))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// message is a parsed request: its header and entries.
type message struct {
	id, source    string
	header        fhir.Object
	event, reason string
	focus         string // the focus reference as sent
	entries       []entry
	byKey         map[string]int // fullUrl and Type/id → index in entries
	senderRef     string         // MessageHeader.sender.reference
}

type entry struct {
	fullURL string
	res     fhir.Object
	where   string // Bundle.entry[i].resource
}

// parseMessage reads the Bundle and its MessageHeader (the first entry).
func parseMessage(body []byte) (*message, error) {
	obj, err := fhir.Parse(body, fhir.DefaultLimits)
	if err != nil {
		return nil, err
	}
	if rt := fhir.ResourceType(obj); rt != "Bundle" {
		return nil, fhir.Errorf(fhir.Invalid, "resourceType", "$process-message takes a message Bundle, not %q", rt)
	}
	if t, _ := obj["type"].(string); t != "message" {
		return nil, fhir.Errorf(fhir.Invalid, "Bundle.type", "$process-message takes a Bundle of type message, not %q", t)
	}
	list := asList(obj["entry"])
	if len(list) == 0 {
		return nil, fhir.Errorf(fhir.Invalid, "Bundle.entry", "a message Bundle starts with its MessageHeader: this one has no entries")
	}
	msg := &message{byKey: map[string]int{}}
	for i, x := range list {
		em := asMap(x)
		res := fhir.Object(asMap(em["resource"]))
		where := "Bundle.entry[" + strconv.Itoa(i) + "]"
		if len(res) == 0 {
			return nil, fhir.Errorf(fhir.Invalid, where+".resource", "every entry of a message carries a resource")
		}
		full, _ := em["fullUrl"].(string)
		msg.entries = append(msg.entries, entry{fullURL: full, res: res, where: where + ".resource"})
		if full != "" {
			msg.byKey[full] = i
		}
		if id := fhir.ID(res); id != "" {
			msg.byKey[fhir.ResourceType(res)+"/"+id] = i
		}
	}
	msg.header = msg.entries[0].res
	if rt := fhir.ResourceType(msg.header); rt != "MessageHeader" {
		return nil, fhir.Errorf(fhir.Invalid, "Bundle.entry[0].resource", "a message Bundle starts with its MessageHeader, not %q", rt)
	}
	msg.id = fhir.ID(msg.header)
	if msg.id == "" || !fhir.ValidID(msg.id) {
		return nil, fhir.Errorf(fhir.Invalid, "Bundle.entry[0].resource.id", "the MessageHeader needs an id (it names the message, its response and a resend): %q is not one", msg.id)
	}
	ev := asMap(msg.header["eventCoding"])
	evSys, _ := ev["system"].(string)
	msg.event, _ = ev["code"].(string)
	if evSys != EventSystem {
		msg.event = evSys + "|" + msg.event
	}
	for _, c := range asList(asMap(msg.header["reason"])["coding"]) {
		if cm := asMap(c); cm["system"] == ReasonSystem {
			msg.reason, _ = cm["code"].(string)
		}
	}
	msg.source, _ = asMap(msg.header["source"])["endpoint"].(string)
	if f := asList(msg.header["focus"]); len(f) > 0 {
		msg.focus, _ = asMap(f[0])["reference"].(string)
	}
	msg.senderRef, _ = asMap(msg.header["sender"])["reference"].(string)
	return msg, nil
}

// check refuses events and reasons other than a referral's new or update.
func (msg *message) check() error {
	const hdr = "Bundle.entry[0].resource"
	if msg.event != EventRequest {
		return fhir.Errorf(fhir.NotSupported, hdr+".eventCoding", "event %q is not accepted here: only %s|%s (a referral)", msg.event, EventSystem, EventRequest)
	}
	switch msg.reason {
	case "new", "update":
	case "":
		return fhir.Errorf(fhir.Invalid, hdr+".reason", "the MessageHeader has no reason from %s (new or update)", ReasonSystem)
	default:
		return fhir.Errorf(fhir.NotSupported, hdr+".reason", "reason %q is not accepted: new or update (a cancellation is an update with ServiceRequest.status revoked)", msg.reason)
	}
	if msg.focus == "" {
		return fhir.Errorf(fhir.Invalid, hdr+".focus", "the MessageHeader has no focus: it names the ServiceRequest")
	}
	i, ok := msg.byKey[msg.focus]
	if !ok || fhir.ResourceType(msg.entries[i].res) != "ServiceRequest" {
		return fhir.Errorf(fhir.Invalid, hdr+".focus", "the focus %q is not a ServiceRequest of this message", msg.focus)
	}
	return nil
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// ProcessMessage is Process for the HTTP door (server.Messages): the status
// and response Bundle, with the error that made it one (nil response: the
// error is answered as an OperationOutcome).
func (r *Receiver) ProcessMessage(ctx context.Context, body []byte) (int, fhir.Object, error) {
	rep, err := r.Process(ctx, body)
	if err != nil {
		return 0, nil, err
	}
	return rep.Status, rep.Bundle, rep.Err
}

// Messaging is the CapabilityStatement's messaging entry: the endpoint and
// the BaRS referral request it receives.
func (r *Receiver) Messaging(endpoint string) map[string]any {
	return map[string]any{
		"endpoint": []any{map[string]any{
			"protocol": map[string]any{"system": "http://terminology.hl7.org/CodeSystem/message-transport", "code": "http"},
			"address":  endpoint,
		}},
		"documentation": "NHS Booking and Referral Standard referrals: event " + EventSystem + "|" + EventRequest +
			", reason new or update (status revoked cancels), focus the ServiceRequest; answered with a " + EventResponse +
			" message (ok, transient-error, fatal-error). A message resent with the same MessageHeader id is answered again and stored once.",
		"supportedMessage": []any{map[string]any{"mode": "receiver", "definition": Definition}},
	}
}
