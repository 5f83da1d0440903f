package engine_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"crs/fhir"
	"crs/fhir/engine"
)

// TestQueryTimeout checks that a search past the query timeout stops with a
// 400 too-costly OperationOutcome saying so, that a conditional create whose
// search runs past it stores nothing and leaves the writer free, and that
// without the bound the same searches answer.
func TestQueryTimeout(t *testing.T) {
	st, v := openStore(t)
	ctx := context.Background()
	open := engine.New(engine.Config{Store: st, Validator: v, Elements: v, Base: "http://test/fhir", QueryTimeout: -1})
	for i := 0; i < 3; i++ {
		if _, err := open.Create(ctx, "Patient", []byte(`{"resourceType":"Patient","gender":"male","birthDate":"1960-01-0`+string(rune('1'+i))+`"}`), ""); err != nil {
			t.Fatal(err)
		}
	}
	costly := engine.New(engine.Config{Store: st, Validator: v, Elements: v, Base: "http://test/fhir", QueryTimeout: time.Nanosecond})
	queries := [][]fhir.RawParam{
		{{Name: "gender", Value: "male"}},
		{{Name: "_sort", Value: "-birthdate"}, {Name: "_count", Value: "1"}},
		{{Name: "_has:Goal:subject:lifecycle-status", Value: "active"}},
	}
	for _, q := range queries {
		b, err := costly.Search(ctx, "Patient", q, engine.SearchOptions{})
		if fhir.KindOf(err) != fhir.TooCostly || !strings.Contains(err.Error(), "too costly") {
			t.Errorf("%v past the timeout: %v, %v; want a too-costly error", q, b, err)
		}
		if fhir.TooCostly.Status() != 400 || fhir.TooCostly.IssueCode() != "too-costly" {
			t.Errorf("too costly maps to %d %s", fhir.TooCostly.Status(), fhir.TooCostly.IssueCode())
		}
		if _, err := open.Search(ctx, "Patient", q, engine.SearchOptions{}); err != nil {
			t.Errorf("%v without a timeout: %v", q, err)
		}
	}
	before := versions(t, open)
	_, err := costly.Create(ctx, "Patient", []byte(`{"resourceType":"Patient","gender":"female"}`), "gender=female")
	if fhir.KindOf(err) != fhir.TooCostly {
		t.Errorf("conditional create past the timeout: %v", err)
	}
	if after := versions(t, open); after != before {
		t.Errorf("a conditional create that ran past the timeout stored %d versions", after-before)
	}
	// The writer is free: a write right after succeeds.
	done := make(chan error, 1)
	go func() {
		_, err := costly.Create(ctx, "Patient", []byte(`{"resourceType":"Patient","gender":"other"}`), "")
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("write after a stopped query: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the writer is held after a query stopped by the timeout")
	}
}

// TestExplainPlans checks that the store's plan reaches Bundle.Plan only when
// the engine is configured to explain it.
func TestExplainPlans(t *testing.T) {
	st, v := openStore(t)
	ctx := context.Background()
	q := []fhir.RawParam{{Name: "gender", Value: "male"}, {Name: "_sort", Value: "-birthdate"}}
	for _, explain := range []bool{false, true} {
		eng := engine.New(engine.Config{Store: st, Validator: v, Elements: v, Base: "http://test/fhir", ExplainPlans: explain})
		b, err := eng.Search(ctx, "Patient", q, engine.SearchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if explain != strings.HasPrefix(b.Plan, "drive: ") {
			t.Errorf("explain %v: plan %q", explain, b.Plan)
		}
	}
}
