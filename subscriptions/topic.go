package subscriptions

import (
	"embed"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"crs/fhir"
)

// The topics are data: R5 SubscriptionTopic resources (the R4 Backport IG's
// "SubscriptionTopic-equivalent"), embedded in the binary. A topic names the
// resource type whose writes trigger it, the interactions that do, optional
// query criteria on the previous and current state, and the parameters a
// subscriber may filter on.
//
//go:embed topics/*.json
var topicFiles embed.FS

// PreviousFailsExtension, on a topic's queryCriteria.previous, makes the
// previous test pass when the previous state does NOT match the query (so
// "became finished" and "came to name the organisation" can be said with
// search parameters, which have no negation of a chain).
const PreviousFailsExtension = "https://community-recovery.example.org/fhir/StructureDefinition/Extension-CRS-TopicPreviousFails"

// Topic is one subscription topic.
type Topic struct {
	URL      string
	Title    string
	Resource string          // the resource type whose writes trigger it
	Create   bool            // a create triggers it
	Update   bool            // an update triggers it
	Delete   bool            // a delete triggers it (judged on the state before it)
	Previous string          // query the state before an update is tested with ("" none)
	Negate   bool            // the previous test passes when Previous does not match
	Current  string          // query the state after the write is tested with ("" none)
	Both     bool            // requireBoth: previous and current tests must both pass
	ForNew   bool            // resultForCreate is test-passes
	Filters  map[string]bool // the parameters a subscriber may filter on
}

// topicJSON is the part of an R5 SubscriptionTopic crs reads.
type topicJSON struct {
	URL             string `json:"url"`
	Title           string `json:"title"`
	ResourceTrigger []struct {
		Resource             string   `json:"resource"`
		SupportedInteraction []string `json:"supportedInteraction"`
		QueryCriteria        *struct {
			Previous  string `json:"previous"`
			XPrevious *struct {
				Extension []struct {
					URL          string `json:"url"`
					ValueBoolean bool   `json:"valueBoolean"`
				} `json:"extension"`
			} `json:"_previous"`
			ResultForCreate string `json:"resultForCreate"`
			Current         string `json:"current"`
			RequireBoth     bool   `json:"requireBoth"`
		} `json:"queryCriteria"`
	} `json:"resourceTrigger"`
	CanFilterBy []struct {
		Resource        string `json:"resource"`
		FilterParameter string `json:"filterParameter"`
	} `json:"canFilterBy"`
}

// Topics are the embedded subscription topics.
type Topics struct {
	byURL map[string]*Topic
	raw   []fhir.Object
}

// LoadTopics reads the embedded topics.
func LoadTopics() (*Topics, error) {
	entries, err := topicFiles.ReadDir("topics")
	if err != nil {
		return nil, err
	}
	ts := &Topics{byURL: map[string]*Topic{}}
	for _, ent := range entries {
		b, err := topicFiles.ReadFile("topics/" + ent.Name())
		if err != nil {
			return nil, err
		}
		t, err := parseTopic(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ent.Name(), err)
		}
		obj, err := fhir.Parse(b, fhir.DefaultLimits)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ent.Name(), err)
		}
		ts.byURL[t.URL] = t
		ts.raw = append(ts.raw, obj)
	}
	return ts, nil
}

func parseTopic(b []byte) (*Topic, error) {
	var j topicJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, err
	}
	if j.URL == "" || len(j.ResourceTrigger) != 1 {
		return nil, fmt.Errorf("a topic needs a url and exactly one resourceTrigger")
	}
	rt := j.ResourceTrigger[0]
	t := &Topic{URL: j.URL, Title: j.Title, Resource: rt.Resource, Filters: map[string]bool{}}
	for _, i := range rt.SupportedInteraction {
		switch i {
		case "create":
			t.Create = true
		case "update":
			t.Update = true
		case "delete":
			t.Delete = true
		default:
			return nil, fmt.Errorf("interaction %q is not supported", i)
		}
	}
	if q := rt.QueryCriteria; q != nil {
		t.Previous, t.Current, t.Both = q.Previous, q.Current, q.RequireBoth
		t.ForNew = q.ResultForCreate == "test-passes"
		if q.XPrevious != nil {
			for _, x := range q.XPrevious.Extension {
				if x.URL == PreviousFailsExtension {
					t.Negate = x.ValueBoolean
				}
			}
		}
	}
	for _, f := range j.CanFilterBy {
		if f.Resource != t.Resource {
			return nil, fmt.Errorf("filter on %s, not the trigger's resource %s", f.Resource, t.Resource)
		}
		t.Filters[f.FilterParameter] = true
	}
	return t, nil
}

// Get returns the topic with canonical url (a |version suffix is ignored).
func (ts *Topics) Get(url string) (*Topic, bool) {
	url, _, _ = strings.Cut(url, "|")
	t, ok := ts.byURL[url]
	return t, ok
}

// URLs returns the topics' canonical URLs, sorted.
func (ts *Topics) URLs() []string {
	out := make([]string, 0, len(ts.byURL))
	for u := range ts.byURL {
		out = append(out, u)
	}
	sort.Strings(out)
	return out
}

// Resources returns the topics as SubscriptionTopic resources.
func (ts *Topics) Resources() []fhir.Object { return ts.raw }

// FilterNames returns the parameters a subscriber may filter on, sorted.
func (t *Topic) FilterNames() []string {
	out := make([]string, 0, len(t.Filters))
	for f := range t.Filters {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// TopicURLs returns the canonical URLs of the topics served (the engine
// advertises them in the CapabilityStatement).
func (m *Manager) TopicURLs() []string { return m.topics.URLs() }
