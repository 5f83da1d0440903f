package fhir

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestMarshalOrdered: the client's order is kept; resourceType goes first and
// the keys the server adds go in by the definition order.
func TestMarshalOrdered(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"server fields added",
			`{"gender":"female","name":[{"given":["A"],"family":"B"}],"resourceType":"Patient","zzz":true,"birthDate":"1970","meta":{"profile":["p"]}}`,
			`{"resourceType":"Patient","id":"x","gender":"female","name":[{"given":["A"],"family":"B"}],"zzz":true,"birthDate":"1970","meta":{"versionId":"2","lastUpdated":"t","profile":["p"]}}`},
		{"in definition order already",
			`{"resourceType":"Patient","id":"x","meta":{"versionId":"1","lastUpdated":"s"},"gender":"female"}`,
			`{"resourceType":"Patient","id":"x","meta":{"versionId":"2","lastUpdated":"t"},"gender":"female"}`},
		{"escaped keys, empty objects and arrays",
			`{"resourceType":"Patient","z\u0061":{},"b":[],"a":[{"y":1,"x":[2,{"d":1,"c":2}]}]}`,
			`{"resourceType":"Patient","id":"x","meta":{"versionId":"2","lastUpdated":"t"},"za":{},"b":[],"a":[{"y":1,"x":[2,{"d":1,"c":2}]}]}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			obj, err := Parse([]byte(c.in), DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			obj["id"] = "x"
			meta, _ := obj["meta"].(map[string]any)
			if meta == nil {
				meta = map[string]any{}
				obj["meta"] = meta
			}
			meta["versionId"], meta["lastUpdated"] = "2", "t"
			got, err := MarshalOrdered(obj, KeyOrder([]byte(c.in)))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != c.want {
				t.Fatalf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}

// TestMarshalOrderedExamples: every R4 example whose resourceType comes first
// is written back exactly as sent (compacted).
func TestMarshalOrderedExamples(t *testing.T) {
	files, _ := filepath.Glob("../testdata/r4/examples/*.json")
	if len(files) < 100 {
		t.Fatalf("only %d examples", len(files))
	}
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		if err := json.Compact(&want, data); err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(want.Bytes(), []byte(`{"resourceType":`)) || bytes.Contains(want.Bytes(), []byte(`\u`)) {
			continue // resourceType moves first; \u escapes are written as characters
		}
		obj, err := Parse(data, DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		got, err := MarshalOrdered(obj, KeyOrder(data))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("%s: not written back as sent:\n%.300s\n%.300s", filepath.Base(f), got, want.Bytes())
		}
		n++
	}
	if n < 100 {
		t.Fatalf("only %d examples compared", n)
	}
}

// FuzzKeyOrder: for every body Parse accepts, KeyOrder reads an order and
// MarshalOrdered writes the same content, stably.
func FuzzKeyOrder(f *testing.F) {
	for _, s := range []string{
		`{"resourceType":"Patient"}`, `{"b":[1,{"z":{},"a":[]}],"resourceType":"Patient","_b":[null,{"id":"x"}]}`,
		`{ "resourceType" : "Patient" , "k\"ey" : "v\\" , "n" : -1.5e+3 }`, `{"resourceType":"Patient","a":{"a":{"a":[[[]]]}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		o := KeyOrder(b) // must not panic on any input
		obj, err := Parse(b, Limits{MaxBytes: 1 << 16, MaxDepth: 16})
		if err != nil {
			return
		}
		if o == nil {
			t.Fatalf("no order for a body Parse accepts: %s", b)
		}
		out, err := MarshalOrdered(obj, o)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(out, Limits{MaxBytes: 1 << 20, MaxDepth: 16})
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		x, _ := MarshalSorted(obj)
		y, _ := MarshalSorted(back)
		if !bytes.Equal(x, y) {
			t.Fatalf("content changed:\n%s\n%s", x, y)
		}
		again, _ := MarshalOrdered(back, KeyOrder(out))
		if !bytes.Equal(out, again) {
			t.Fatalf("not stable:\n%s\n%s", out, again)
		}
	})
}
