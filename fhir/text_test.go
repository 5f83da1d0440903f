package fhir

import (
	"strings"
	"testing"
)

func TestParseRefusesNonText(t *testing.T) {
	cases := []struct {
		name, body, want string
	}{
		{"invalid byte", "{\"resourceType\":\"Patient\",\"id\":\"a\xffb\"}", "offset 33"},
		{"truncated sequence", "{\"resourceType\":\"Patient\",\"id\":\"\xe2\x82\"}", "offset 32"},
		{"lone high surrogate", `{"resourceType":"Patient","id":"\ud800"}`, "offset 32"},
		{"lone low surrogate", `{"resourceType":"Patient","id":"\udc00x"}`, "offset 32"},
		{"high then not low", `{"resourceType":"Patient","id":"\ud800\u0041"}`, "offset 32"},
		{"high at the end", `{"resourceType":"Patient","id":"x\uD83D"}`, "offset 33"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.body), Limits{})
			if KindOf(err) != Invalid || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want Invalid naming %s", err, c.want)
			}
		})
	}
}

func TestParseKeepsText(t *testing.T) {
	for _, body := range []string{
		`{"resourceType":"Patient","id":"\ud83d\ude00 é ü"}`,
		`{"resourceType":"Patient","name":[{"text":"back\\ud800slash"}]}`, // an escaped backslash, then text
		`{"resourceType":"Patient","name":[{"text":"😀 \u00e9 \" \\"}]}`,
	} {
		if _, err := Parse([]byte(body), Limits{}); err != nil {
			t.Errorf("%s: %v", body, err)
		}
	}
}

// FuzzParseText: whatever Parse accepts is kept as sent — no string of the
// result holds U+FFFD unless the body wrote one.
func FuzzParseText(f *testing.F) {
	for _, s := range []string{
		`{"resourceType":"Patient","id":"\ud83d\ude00"}`, "{\"resourceType\":\"Patient\",\"id\":\"\xff\"}",
		`{"resourceType":"Patient","id":"\ud800"}`, `{"resourceType":"Patient","a":"\\ud800"}`, `{"resourceType":"Patient","a":"\ufffd"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		obj, err := Parse(b, Limits{MaxBytes: 1 << 16, MaxDepth: 16})
		if err != nil {
			return
		}
		if strings.Contains(string(b), "\ufffd") || strings.Contains(strings.ToLower(string(b)), `\ufffd`) {
			return
		}
		var walk func(v any)
		walk = func(v any) {
			switch x := v.(type) {
			case string:
				if strings.ContainsRune(x, '\ufffd') {
					t.Fatalf("U+FFFD in %q from %q", x, b)
				}
			case map[string]any:
				for k, c := range x {
					walk(k)
					walk(c)
				}
			case []any:
				for _, c := range x {
					walk(c)
				}
			}
		}
		walk(obj)
	})
}
