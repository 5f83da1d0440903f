package subscriptions

import (
	"testing"

	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/search"
)

// FuzzParseSpec: any Subscription body is read into a spec or refused with
// a client error; never a panic, never an internal error, and a spec read
// keeps within the bounds.
func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{
		`{"resourceType":"Subscription","status":"requested","reason":"r","criteria":"https://community-recovery.example.org/fhir/SubscriptionTopic/careplan-changed",
"_criteria":{"extension":[{"url":"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria","valueString":"CarePlan?subject=Patient/a"}]},
"channel":{"type":"rest-hook","endpoint":"https://dscr.example.org/hook","payload":"application/fhir+json","header":["Authorization: Bearer x"],
"_payload":{"extension":[{"url":"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content","valueCode":"full-resource"}]},
"extension":[{"url":"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-heartbeat-period","valueUnsignedInt":60},
{"url":"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-timeout","valueUnsignedInt":5},
{"url":"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-max-count","valuePositiveInt":20}]}}`,
		`{"resourceType":"Subscription","criteria":"https://community-recovery.example.org/fhir/SubscriptionTopic/goal-changed","channel":{"type":"rest-hook","endpoint":"http://[::1]:80/x"}}`,
		`{"resourceType":"Subscription","criteria":"x","channel":{}}`,
		`{"resourceType":"Subscription","criteria":"https://community-recovery.example.org/fhir/SubscriptionTopic/episode-finished","channel":{"type":"rest-hook","endpoint":"https://h/x","header":["a\nb: c"]}}`,
	} {
		f.Add([]byte(s))
	}
	topics, err := LoadTopics()
	if err != nil {
		f.Fatal(err)
	}
	params := search.Default()
	parseFilter := func(rt, q string) ([]fhir.RawParam, error) {
		raw, err := engine.ParseQueryString(q)
		if err != nil {
			return nil, err
		}
		_, err = params.ParseQuery(rt, raw, search.ParseOptions{DefaultCount: 1, MaxCount: 1})
		return raw, err
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		obj, err := fhir.Parse(body, fhir.DefaultLimits)
		if err != nil {
			return
		}
		sp, err := parseSpec(obj, topics, parseFilter)
		if err != nil {
			if k := fhir.KindOf(err); k != fhir.Invalid {
				t.Fatalf("kind %v: %v", k, err)
			}
			return
		}
		if sp.Topic == nil || sp.Endpoint == "" || sp.Timeout <= 0 || sp.Timeout > MaxTimeout || sp.MaxCount < 1 || sp.MaxCount > MaxMax ||
			(sp.Heartbeat != 0 && (sp.Heartbeat < MinHeartbeat || sp.Heartbeat > MaxHeartbeat)) || len(sp.Headers) > maxHeaders {
			t.Fatalf("out of bounds: %+v", sp)
		}
	})
}
