package measures

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// The charts are SVG drawn on the server: no script, nothing fetched from
// elsewhere, they print as they show, and their numbers are in <title>
// elements that screen readers and tooltips read.

// bar is one bar of a chart: its label and value (nil: no data).
type bar struct {
	Label string
	Value *float64
	Note  string // e.g. "12 of 20"
}

// panel is one chart: a title, bars and how to read the values.
type panel struct {
	Title   string
	Bars    []bar
	Percent bool    // values are shares 0..1 shown as %
	Unit    string  // unit after a value when not a percentage
	Target  float64 // a reference line (0: none), in the values' scale
	TLabel  string
	Wide    bool // labels under every bar (few bars) rather than every fourth
}

const (
	panelW, panelH = 460.0, 270.0
	plotL, plotR   = 48.0, 12.0
	plotT, plotB   = 34.0, 52.0
)

// svgPanels draws panels in a grid of two columns as one SVG document.
func svgPanels(title string, panels []panel) string {
	rows := (len(panels) + 1) / 2
	w, h := 2*panelW+20, float64(rows)*(panelH+16)+4
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="%s" font-family="system-ui, -apple-system, Segoe UI, Roboto, Arial, sans-serif">`, w, h, w, h, html.EscapeString(title))
	fmt.Fprintf(&b, `<title>%s</title><rect width="100%%" height="100%%" fill="#ffffff"/>`, html.EscapeString(title))
	for i, p := range panels {
		x := float64(i%2) * (panelW + 20)
		y := float64(i/2) * (panelH + 16)
		drawPanel(&b, x, y, p)
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func drawPanel(b *strings.Builder, x, y float64, p panel) {
	fmt.Fprintf(b, `<g transform="translate(%.1f %.1f)" class="panel">`, x, y)
	fmt.Fprintf(b, `<rect x="0.5" y="0.5" width="%.0f" height="%.0f" fill="#ffffff" stroke="#6b6b6b"/>`, panelW-1, panelH-1)
	fmt.Fprintf(b, `<text x="10" y="22" font-size="15" font-weight="600" fill="#111111">%s</text>`, html.EscapeString(p.Title))
	plotW, plotH := panelW-plotL-plotR, panelH-plotT-plotB
	max := 0.0
	for _, br := range p.Bars {
		if br.Value != nil && *br.Value > max {
			max = *br.Value
		}
	}
	if p.Percent {
		max = 1
	} else {
		max = niceCeil(math.Max(max, p.Target))
	}
	// Grid lines and y labels.
	for k := 0; k <= 4; k++ {
		v := max * float64(k) / 4
		yy := plotT + plotH - plotH*float64(k)/4
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#d0d0d0"/>`, plotL, yy, plotL+plotW, yy)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="end" fill="#333333">%s</text>`, plotL-4, yy+4, axisLabel(v, p.Percent))
	}
	n := len(p.Bars)
	if n == 0 {
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="13" text-anchor="middle" fill="#333333">No data in this period</text></g>`, panelW/2, panelH/2)
		return
	}
	slot := plotW / float64(n)
	bw := math.Max(2, slot*0.72)
	for i, br := range p.Bars {
		bx := plotL + slot*float64(i) + (slot-bw)/2
		if br.Value != nil {
			bh := 0.0
			if max > 0 {
				bh = plotH * *br.Value / max
			}
			fmt.Fprintf(b, `<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#1d4e89"><title>%s: %s%s</title></rect>`,
				bx, plotT+plotH-bh, bw, bh, html.EscapeString(br.Label), valueLabel(*br.Value, p.Percent, p.Unit), noteSuffix(br.Note))
		}
		if p.Wide {
			size := 11.0
			if n > 5 {
				size = 9.5
			}
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="%.1f" text-anchor="middle" fill="#333333">%s</text>`,
				bx+bw/2, plotT+plotH+16, size, html.EscapeString(br.Label))
			continue
		}
		if i%4 == 0 {
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="10.5" text-anchor="end" fill="#333333" transform="rotate(-35 %.1f %.1f)">%s</text>`,
				bx+bw/2, plotT+plotH+14, bx+bw/2, plotT+plotH+14, html.EscapeString(br.Label))
		}
	}
	if p.Target > 0 && p.Target <= max {
		ty := plotT + plotH - plotH*p.Target/max
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#b3261e" stroke-width="2" stroke-dasharray="6 4"/>`, plotL, ty, plotL+plotW, ty)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="end" fill="#b3261e">%s</text>`, plotL+plotW, ty-4, html.EscapeString(p.TLabel))
	}
	b.WriteString(`</g>`)
}

func noteSuffix(n string) string {
	if n == "" {
		return ""
	}
	return " (" + html.EscapeString(n) + ")"
}

func axisLabel(v float64, pct bool) string {
	if pct {
		return fmt.Sprintf("%.0f%%", v*100)
	}
	return trimFloat(v)
}

func valueLabel(v float64, pct bool, unit string) string {
	if pct {
		return fmt.Sprintf("%.0f%%", v*100)
	}
	s := trimFloat(v)
	if unit != "" {
		s += " " + unit
	}
	return html.EscapeString(s)
}

func trimFloat(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

// niceCeil rounds up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}
