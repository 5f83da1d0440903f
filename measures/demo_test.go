package measures

import (
	"testing"

	"crs/profiles"
)

func TestDemoNHSNumbers(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 5000; i++ {
		n := DemoNHSNumber(i)
		if ok, why := profiles.ValidNHSNumber(n); !ok {
			t.Fatalf("DemoNHSNumber(%d) = %s: %s", i, n, why)
		}
		if n[:3] != "999" {
			t.Fatalf("DemoNHSNumber(%d) = %s is not in the 999 range", i, n)
		}
		seen[n] = true
	}
	if len(seen) != 5000 {
		t.Fatalf("only %d distinct numbers for 5000 people: one person, one NHS number", len(seen))
	}
}

// TestDemoDeterministic: the same seed and day give the same region.
func TestDemoDeterministic(t *testing.T) {
	a := NewDemo(DemoOptions{Seed: 7, Now: testNow, Episodes: 40})
	b := NewDemo(DemoOptions{Seed: 7, Now: testNow, Episodes: 40})
	c := NewDemo(DemoOptions{Seed: 8, Now: testNow, Episodes: 40})
	for i := range a.episodes {
		x, _ := a.resources(a.episodes[i])
		y, _ := b.resources(b.episodes[i])
		if len(x) != len(y) {
			t.Fatalf("episode %d differs between two runs with one seed", i)
		}
	}
	same := 0
	for i := range a.episodes {
		if a.episodes[i].drd.Equal(c.episodes[i].drd) {
			same++
		}
	}
	if same == len(a.episodes) {
		t.Fatal("another seed gave the same region")
	}
}

// TestDemoLoadRefusesNonEmpty: a second load without force is refused and
// writes nothing; with force it runs.
func TestDemoLoadRefusesNonEmpty(t *testing.T) {
	eng := newEngine(t, false)
	loadDemo(t, eng, 20)
	d := NewDemo(DemoOptions{Seed: 2, Now: testNow, Episodes: 5})
	if _, err := d.Load(devCtx(), eng, false); err != ErrNotEmpty {
		t.Fatalf("second load without --force: %v, want ErrNotEmpty", err)
	}
	if _, err := d.Load(devCtx(), eng, true); err != nil {
		t.Fatalf("load with force: %v", err)
	}
}
