package subscriptions

import (
	"net"
	"net/url"
	"strings"
	"time"

	"crs/fhir"
)

// The R4 Subscriptions Backport IG 1.1.0 extensions crs reads.
const (
	backport           = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
	extFilterCriteria  = backport + "backport-filter-criteria"
	extPayloadContent  = backport + "backport-payload-content"
	extHeartbeatPeriod = backport + "backport-heartbeat-period"
	extTimeout         = backport + "backport-timeout"
	extMaxCount        = backport + "backport-max-count"
	// StatusProfile is the profile of the SubscriptionStatus Parameters.
	StatusProfile = backport + "backport-subscription-status-r4"
)

// Payload contents (backport-payload-content).
const (
	PayloadEmpty = "empty"
	PayloadIDs   = "id-only"
	PayloadFull  = "full-resource"
)

// Bounds on what a Subscription may ask for.
const (
	DefaultTimeout = 10 * time.Second
	MaxTimeout     = 60 * time.Second
	MinHeartbeat   = 1 * time.Second
	MaxHeartbeat   = 24 * time.Hour
	DefaultMax     = 100 // events per notification when backport-max-count is absent
	MaxMax         = 1000
	maxFilters     = 10
	maxHeaders     = 10
)

// spec is what a Subscription asks for.
type spec struct {
	ID        string
	Status    string
	Topic     *Topic
	Filter    []fhir.RawParam // the filter criteria, on Topic.Resource
	Endpoint  string
	Host      string // the endpoint's host name, lower case
	Loopback  bool   // the endpoint is on 127.0.0.1, ::1 or localhost
	Headers   [][2]string
	Payload   string
	Heartbeat time.Duration // 0: none
	Timeout   time.Duration
	MaxCount  int
	End       time.Time // Subscription.end; zero: none
}

// ended reports whether the subscription's end has passed at now.
func (s *spec) ended(now time.Time) bool {
	return !s.End.IsZero() && !now.Before(s.End)
}

// parseSpec reads and checks a Subscription. parseFilter checks a filter's
// query against the topic's resource type.
func parseSpec(obj fhir.Object, topics *Topics, parseFilter func(rt, q string) ([]fhir.RawParam, error)) (*spec, error) {
	s := &spec{Payload: PayloadIDs, Timeout: DefaultTimeout, MaxCount: DefaultMax}
	s.ID, _ = obj["id"].(string)
	s.Status, _ = obj["status"].(string)
	if end, ok := obj["end"].(string); ok {
		t, err := time.Parse(time.RFC3339Nano, end)
		if err != nil {
			return nil, fhir.Errorf(fhir.Invalid, "Subscription.end", "end %q is not an instant with a time zone", end)
		}
		s.End = t
	}
	criteria, _ := obj["criteria"].(string)
	t, ok := topics.Get(criteria)
	if !ok {
		return nil, fhir.Errorf(fhir.Invalid, "Subscription.criteria", "unknown subscription topic %q; the topics are %s", criteria, strings.Join(topics.URLs(), ", "))
	}
	s.Topic = t
	for i, x := range extensions(obj["_criteria"], extFilterCriteria) {
		where := "Subscription.criteria.extension(" + quote(extFilterCriteria) + ")[" + itoa(i) + "]"
		v, _ := x["valueString"].(string)
		if i >= maxFilters {
			return nil, fhir.Errorf(fhir.Invalid, where, "at most %d filter criteria", maxFilters)
		}
		rt, q, found := strings.Cut(v, "?")
		if !found || rt != t.Resource {
			return nil, fhir.Errorf(fhir.Invalid, where, "filter criteria %q must be %s?name=value for topic %s", v, t.Resource, t.URL)
		}
		raw, err := parseFilter(rt, q)
		if err != nil {
			return nil, fhir.Errorf(fhir.Invalid, where, "filter criteria %q: %s", v, messageOf(err))
		}
		for _, p := range raw {
			name, _, _ := strings.Cut(p.Name, ":")
			if !t.Filters[name] || name != p.Name {
				return nil, fhir.Errorf(fhir.Invalid, where, "topic %s does not allow a filter on %q; it allows %s", t.URL, p.Name, strings.Join(t.FilterNames(), ", "))
			}
		}
		s.Filter = append(s.Filter, raw...)
	}
	ch, _ := obj["channel"].(map[string]any)
	if ch == nil {
		return nil, fhir.Errorf(fhir.Invalid, "Subscription.channel", "a channel is required")
	}
	if typ, _ := ch["type"].(string); typ != "rest-hook" {
		return nil, fhir.Errorf(fhir.Invalid, "Subscription.channel.type", "channel type %q is not supported: crs delivers by rest-hook only", typ)
	}
	if err := s.endpoint(ch); err != nil {
		return nil, err
	}
	if p, _ := ch["payload"].(string); p != "" && p != "application/fhir+json" && p != "application/json" {
		return nil, fhir.Errorf(fhir.Invalid, "Subscription.channel.payload", "payload type %q is not supported: use application/fhir+json", p)
	}
	if xs := extensions(ch["_payload"], extPayloadContent); len(xs) > 0 {
		code, _ := xs[0]["valueCode"].(string)
		switch code {
		case PayloadEmpty, PayloadIDs, PayloadFull:
			s.Payload = code
		default:
			return nil, fhir.Errorf(fhir.Invalid, "Subscription.channel.payload.extension("+quote(extPayloadContent)+")", "payload content %q is not one of empty, id-only, full-resource", code)
		}
	}
	hs, _ := ch["header"].([]any)
	if len(hs) > maxHeaders {
		return nil, fhir.Errorf(fhir.Invalid, "Subscription.channel.header", "at most %d headers", maxHeaders)
	}
	for i, h := range hs {
		str, _ := h.(string)
		name, value, ok := strings.Cut(str, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(str, "\r\n") || strings.ContainsAny(name, " \t()<>@,;\\\"/[]?={}") {
			return nil, fhir.Errorf(fhir.Invalid, "Subscription.channel.header["+itoa(i)+"]", "a header is \"Name: value\" on one line")
		}
		s.Headers = append(s.Headers, [2]string{name, strings.TrimSpace(value)})
	}
	var err error
	if s.Heartbeat, err = seconds(ch, extHeartbeatPeriod, "valueUnsignedInt", MinHeartbeat, MaxHeartbeat); err != nil {
		return nil, err
	}
	if d, err := seconds(ch, extTimeout, "valueUnsignedInt", time.Second, MaxTimeout); err != nil {
		return nil, err
	} else if d > 0 {
		s.Timeout = d
	}
	if xs := extensions(ch, extMaxCount); len(xs) > 0 {
		n, ok := number(xs[0]["valuePositiveInt"])
		if !ok || n < 1 || n > MaxMax {
			return nil, fhir.Errorf(fhir.Invalid, "Subscription.channel.extension("+quote(extMaxCount)+")", "backport-max-count is a positiveInt up to %d", MaxMax)
		}
		s.MaxCount = n
	}
	return s, nil
}

// endpoint checks the channel's endpoint: an absolute https URL, or http on
// loopback.
func (s *spec) endpoint(ch map[string]any) error {
	raw, _ := ch["endpoint"].(string)
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fhir.Errorf(fhir.Invalid, "Subscription.channel.endpoint", "the endpoint must be an absolute https URL without credentials")
	}
	host := strings.ToLower(u.Hostname())
	ip := net.ParseIP(host)
	s.Loopback = host == "localhost" || (ip != nil && ip.IsLoopback())
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && s.Loopback:
	default:
		return fhir.Errorf(fhir.Invalid, "Subscription.channel.endpoint", "the endpoint must use https (http only on loopback), not %q", u.Scheme)
	}
	s.Endpoint, s.Host = raw, host
	return nil
}

// extensions returns the extensions with url on an element (or on the
// primitive's _element).
func extensions(el any, url string) []map[string]any {
	m, _ := el.(map[string]any)
	xs, _ := m["extension"].([]any)
	var out []map[string]any
	for _, x := range xs {
		xm, _ := x.(map[string]any)
		if u, _ := xm["url"].(string); u == url {
			out = append(out, xm)
		}
	}
	return out
}

// seconds reads a duration in seconds from an extension of ch, within bounds
// (0 when absent).
func seconds(ch map[string]any, url, field string, lo, hi time.Duration) (time.Duration, error) {
	xs := extensions(ch, url)
	if len(xs) == 0 {
		return 0, nil
	}
	n, ok := number(xs[0][field])
	d := time.Duration(n) * time.Second
	if !ok || d < lo || d > hi {
		return 0, fhir.Errorf(fhir.Invalid, "Subscription.channel.extension("+quote(url)+")", "%s must be between %v and %v seconds", url[len(backport):], int(lo.Seconds()), int(hi.Seconds()))
	}
	return d, nil
}

// number reads a JSON integer (the parser keeps numbers as json.Number).
func number(v any) (int, bool) {
	type numberer interface{ Int64() (int64, error) }
	switch n := v.(type) {
	case numberer:
		i, err := n.Int64()
		return int(i), err == nil && i >= 0 && i < 1<<31
	case float64:
		return int(n), n == float64(int(n)) && n >= 0
	}
	return 0, false
}

func quote(s string) string { return "'" + s + "'" }
