package measures

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"crs/fhir/engine"
	"crs/server"
)

// plantLateStart writes, through the engine, one person in Rugby whose care
// started two days after the discharge ready date, and returns the referral id.
func plantLateStart(t *testing.T, eng *engine.Engine) string {
	t.Helper()
	d := NewDemo(DemoOptions{Seed: 99, Now: testNow, Episodes: 1})
	e := demoEpisode{n: 9001, locality: "rugby", provider: 6, trust: 0, pattern: "double",
		drd: testNow.Add(-6 * day), referred: testNow.Add(-6*day + time.Hour), admit: testNow.Add(-12 * day),
		arrival: testNow.Add(-4*day - time.Hour), assessed: testNow.Add(-4 * day), started: true,
		end: testNow.Add(30 * day), screened: true, accepted: true, screenDate: testNow.Add(-5 * day), goals: 1,
		calls: 4, given: "Planted", family: "Latestart", gender: "female", birth: "1940-01-01", missed: 1, identityReview: true}
	first, _ := d.resources(e)
	var entries []map[string]any
	for _, r := range first {
		entries = append(entries, put(r))
	}
	body, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": entries})
	if _, err := eng.Bundle(devCtx(), body, engine.SearchOptions{Minimal: true}); err != nil {
		t.Fatal(err)
	}
	return "demo-9001"
}

// pageServer serves eng's API and pages in development mode on loopback.
func pageServer(t *testing.T, eng *engine.Engine) *httptest.Server {
	t.Helper()
	svc, err := NewService(eng, "", func() time.Time { return testNow })
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(server.New(server.Config{Engine: eng, Measures: svc}))
	t.Cleanup(srv.Close)
	return srv
}

// TestCaseloadPageInBrowser drives the page in headless Chromium: it loads,
// the table shows the locality's caseload, the planted late start is flagged,
// the charts render, and a person's timeline opens from the keyboard. It
// writes the screenshot for the README to docs/caseload.png when
// CRS_SCREENSHOT=1.
func TestCaseloadPageInBrowser(t *testing.T) {
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (make test installs it)")
	}
	eng := small(t)
	planted := plantLateStart(t, eng)
	srv := pageServer(t, eng)

	opts := append(chromedp.DefaultExecAllocatorOptions[:0:0],
		chromedp.ExecPath(browser), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 1000))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	defer cancel()

	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/?locality=rugby"),
		chromedp.WaitVisible(chromedp.CSS("#caseload")),
	); err != nil {
		t.Fatal(err)
	}
	table, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#caseload")))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#caseload tbody tr[data-referral]").length`))
	if err != nil {
		t.Fatal(err)
	}
	flagText, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`tr[data-referral="`+planted+`"] .flag-late-start`)))
	if err != nil {
		t.Fatal(err)
	}
	chartOK, err := chromedp.Run(ctx, chromedp.Poll[bool](`(() => { const i = document.getElementById("charts"); return i.complete && i.naturalWidth > 0; })()`, chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table, "Planted Latestart") {
		t.Errorf("the Rugby caseload does not show the planted person")
	}
	if strings.Contains(table, "North Warwickshire") {
		t.Errorf("the Rugby caseload shows another locality")
	}
	cl, err := NewCaseloads(eng, "", func() time.Time { return testNow }).Caseload(devCtx(), Filter{Locality: "rugby"})
	if err != nil {
		t.Fatal(err)
	}
	want := len(cl.Rows)
	if rows != want || rows < 2 {
		t.Errorf("the table has %d rows, want the %d people on Rugby's caseload", rows, want)
	}
	if !strings.Contains(flagText, "24 h") {
		t.Errorf("the planted late start is not flagged: %q", flagText)
	}
	if !chartOK {
		t.Errorf("the charts did not render")
	}
	if os.Getenv("CRS_SCREENSHOT") == "1" {
		if err := os.WriteFile(filepath.Join("..", "docs", "caseload.png"), shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Open the timeline from the keyboard: focus the name, press Enter.
	if err := chromedp.Do(ctx,
		chromedp.Focus(chromedp.CSS(`tr[data-referral="`+planted+`"] th a`)),
		chromedp.KeyEvent("\r"),
		chromedp.WaitVisible(chromedp.CSS("#timeline")),
	); err != nil {
		t.Fatal(err)
	}
	url, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	timeline, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#timeline")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(url, "/mdt/timeline/"+planted) {
		t.Errorf("Enter on the name opened %s", url)
	}
	for _, s := range []string{"discharge ready", "Referred", "home-assessment", "Missed visit", "Care plan: 4 calls a day"} {
		if !strings.Contains(timeline, s) {
			t.Errorf("the timeline lacks %q:\n%s", s, timeline)
		}
	}

	// A tablet (820 px wide): nothing but the table's own scroller is wider
	// than the screen. Printed: the picker is left out.
	if err := chromedp.Do(ctx,
		chromedp.EmulateViewport(820, 1180),
		chromedp.Navigate(srv.URL+"/?locality=rugby"),
		chromedp.WaitVisible(chromedp.CSS("#caseload")),
	); err != nil {
		t.Fatal(err)
	}
	overflow, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`))
	if err != nil {
		t.Fatal(err)
	}
	if overflow {
		t.Error("the page is wider than a tablet's screen")
	}
	printMedia := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Media: "print"})
		return err
	})
	if err := chromedp.Do(ctx, printMedia); err != nil {
		t.Fatal(err)
	}
	picker, err := chromedp.Run(ctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector(".picker")).display`))
	if err != nil {
		t.Fatal(err)
	}
	if picker != "none" {
		t.Errorf("printed, the picker shows (display %q)", picker)
	}

	// A locality that does not exist: a readable message, not a stack trace.
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/?locality=atlantis")); err != nil {
		t.Fatal(err)
	}
	msg, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(".message")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg, `There is no locality "atlantis"`) {
		t.Errorf("unknown locality: %q", msg)
	}
}
