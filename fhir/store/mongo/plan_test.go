package mongo

import (
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"crs/fhir/store"
)

// TestPlanExact: which shapes the server answers exactly (count and limit on
// the server) and which are sent as a superset and checked again in Go — the
// list in plan.go's comment.
func TestPlanExact(t *testing.T) {
	s := open(t, ferret(t))
	defer s.Close()
	ctx := context.Background()
	for _, c := range []struct {
		rt, qs string
		exact  bool
	}{
		{"Patient", "identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009", true},
		{"Patient", "gender=male,female&family=smi", true},
		{"Patient", "gender:not=male", true},
		{"Patient", "identifier=urn:x|", true},
		{"Patient", "birthdate=ge1950&birthdate=lt1960", true},
		{"Patient", "birthdate=gt1950,le1940", true},
		{"Patient", "birthdate:missing=true", true},
		{"Patient", "family:exact=Smith", true},
		{"Patient", "organization=Organization/o1&_has:Goal:subject:lifecycle-status=active", true},
		{"ServiceRequest", "subject.identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009&status=active", true},
		{"ServiceRequest", "requester:identifier=RKB&subject=p1", true},
		{"Encounter", "length=gt1.5", true},
		{"Patient", "birthdate=1950", false},
		{"Patient", "birthdate=ne1950", false},
		{"Patient", "birthdate=ap1950", false},
		{"Encounter", "length=1.5", false},
		{"Encounter", "length=gt1.5|http://unitsofmeasure.org|h", false},
		{"Encounter", "class:text=home", false},
		{"Patient", "family:contains=mit", false},
		{"ValueSet", "url:below=http://example.org", false},
	} {
		pl, err := reader{s: s}.plan(ctx, mustQuery(t, c.rt, c.qs))
		if err != nil {
			t.Errorf("%s?%s: %v", c.rt, c.qs, err)
			continue
		}
		if pl.exact != c.exact {
			t.Errorf("%s?%s: exact %v, want %v (filter %v)", c.rt, c.qs, pl.exact, c.exact, pl.filter)
		}
	}
}

// TestUpgradeLayout: documents written before the derived fields existed are
// found by searches that use them once the store opens again.
func TestUpgradeLayout(t *testing.T) {
	uri := ferret(t)
	s := open(t, uri)
	ctx := context.Background()
	if err := s.Write(ctx, func(tx store.Tx) error {
		put(t, tx, 1, `{"resourceType":"Patient","id":"old","birthDate":"1950-02-03","name":[{"family":"Smith"}],"identifier":[{"system":"urn:x","value":"1"}]}`)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The document as an earlier version of the store wrote it (which kept
	// no layout marker).
	if _, err := s.res.UpdateOne(ctx, bson.D{{Key: "_id", Value: "Patient/old"}}, bson.D{
		{Key: "$unset", Value: bson.D{{Key: "lay", Value: ""}, {Key: "so", Value: ""}, {Key: "dl", Value: ""}, {Key: "dh", Value: ""}, {Key: "st", Value: ""}}},
		{Key: "$set", Value: bson.D{{Key: "keys", Value: bson.A{"t|identifier|1", "t|identifier|urn:x|1"}}}},
	}); err != nil {
		t.Fatal(err)
	}
	qs := []string{"birthdate=1950", "family=smi", "identifier=urn:x|", "_sort=birthdate"}
	if res, err := s.Search(ctx, mustQuery(t, "Patient", "birthdate=1950")); err != nil || res.Total != 0 {
		t.Fatalf("the old layout should not answer before the upgrade: %+v %v", res, err)
	}
	if _, err := s.meta.DeleteOne(ctx, bson.D{{Key: "_id", Value: "layout"}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, uri)
	defer s.Close()
	for _, q := range qs {
		res, err := s.Search(ctx, mustQuery(t, "Patient", q))
		if err != nil || res.Total != 1 || len(res.Matches) != 1 {
			t.Errorf("%s after the upgrade: %+v %v", q, res, err)
		}
	}
}
