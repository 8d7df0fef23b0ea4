package reports

import (
	"fmt"
	"html"
	"math"
	"sort"
	"strings"
)

// SVG geometry of one timeline lane.
const (
	svgWidth  = 1100
	svgLeft   = 30
	svgRight  = 1070
	svgHeight = 130
	svgAxis   = 70
)

// Colours of the marks, shared by the legend.
var kindColour = map[EventKind]string{
	EventData:     "#0969da",
	EventAck:      "#8c959f",
	EventProbe:    "#bc4c00",
	EventProbeAck: "#1a7f37",
	EventExpiry:   "#cf222e",
	EventRST:      "#cf222e",
	EventResponse: "#1a7f37",
	EventTimeout:  "#57606a",
	EventNote:     "#8250df",
}

// maxMarks bounds the marks drawn per lane: a capture of days holds
// thousands of probes, and beyond this they merge into one band anyway.
const maxMarks = 3000

// TimelineSVG draws one flow as an inline SVG: a time axis, the stretch the
// middlebox remembers the flow (green) and has forgotten it (red), and a
// mark per event: data (blue bars), probes (orange, above the axis), their
// answers (green, below), the expiry (red dashed line), RSTs (red X), the
// response (green dot) and the client giving up (grey line).
func TimelineSVG(t Timeline) string {
	end := t.EndS
	for _, e := range t.Events {
		end = math.Max(end, e.T)
	}
	if end <= 0 {
		end = 1
	}
	x := func(s float64) float64 { return svgLeft + (svgRight-svgLeft)*s/end }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="100%%" role="img" aria-label="%s">`,
		svgWidth, svgHeight, attr(t.Title+": "+t.Outcome))
	fmt.Fprintf(&b, `<title>%s</title>`, html.EscapeString(t.Title))

	// The band: how long the middlebox keeps the flow.
	expiry := -1.0
	for _, e := range t.Events {
		if e.Kind == EventExpiry {
			expiry = e.T
			break
		}
	}
	if expiry >= 0 {
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="10" fill="#dafbe1"><title>middlebox remembers the flow</title></rect>`,
			x(0), svgAxis-5, x(expiry)-x(0))
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="10" fill="#ffebe9"><title>middlebox has forgotten the flow</title></rect>`,
			x(expiry), svgAxis-5, x(end)-x(expiry))
	}
	if t.LimitS > 0 && t.LimitS <= end {
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#cf222e" stroke-width="1" stroke-dasharray="2 3"/>`,
			x(t.LimitS), x(t.LimitS), svgAxis-30, svgAxis+30)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="11" fill="#cf222e" text-anchor="middle">idle limit %s</text>`,
			x(t.LimitS), svgAxis+44, fmtSeconds(t.LimitS))
	}

	// The axis and its ticks.
	fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#57606a" stroke-width="1.5"/>`, svgLeft, svgRight, svgAxis, svgAxis)
	step := tickStep(end)
	for s := 0.0; s <= end+step/1000; s += step {
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#8c959f"/>`, x(s), x(s), svgAxis+5, svgAxis+9)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="11" fill="#57606a" text-anchor="middle">%s</text>`,
			x(s), svgHeight-4, html.EscapeString(axisLabel(s, step)))
	}

	// Marks; labels of the big moments are staggered so they never overlap.
	evs := append([]Event(nil), t.Events...)
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].T < evs[j].T })
	drawn := 0
	lastLabelX := []float64{-1e9, -1e9}
	for _, e := range evs {
		if drawn >= maxMarks {
			break
		}
		drawn++
		px := x(e.T)
		tip := fmtSeconds(e.T) + " " + e.Kind.Describe()
		if e.Label != "" {
			tip = fmtSeconds(e.T) + " " + e.Label
		}
		c := kindColour[e.Kind]
		fmt.Fprintf(&b, `<g><title>%s</title>`, html.EscapeString(tip))
		label := ""
		switch e.Kind {
		case EventData:
			fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="4" height="18" fill="%s"/>`, px-2, svgAxis-9, c)
		case EventAck:
			fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="2" height="10" fill="%s"/>`, px-1, svgAxis-5, c)
		case EventProbe:
			fmt.Fprintf(&b, `<path d="M%.1f %d l-6 -12 h12 z" fill="%s"/>`, px, svgAxis-8, c)
		case EventProbeAck:
			fmt.Fprintf(&b, `<path d="M%.1f %d l-6 12 h12 z" fill="%s"/>`, px, svgAxis+8, c)
		case EventExpiry:
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="14" y2="%d" stroke="%s" stroke-width="2" stroke-dasharray="6 4"/>`, px, px, svgAxis+12, c)
			label = "forgotten"
		case EventRST:
			fmt.Fprintf(&b, `<path d="M%.1f %d l12 12 m0 -12 l-12 12" stroke="%s" stroke-width="3.5"/>`, px-6, svgAxis-6, c)
			label = "RST"
		case EventResponse:
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%d" r="7" fill="%s" stroke="#fff" stroke-width="1.5"/>`, px, svgAxis, c)
			label = "response"
		case EventTimeout:
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="14" y2="%d" stroke="%s" stroke-width="3"/>`, px, px, svgAxis+12, c)
			label = "gave up"
		default:
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%d" r="3.5" fill="none" stroke="%s" stroke-width="1.5"/>`, px, svgAxis-22, c)
		}
		if label != "" {
			row := 0
			if px-lastLabelX[0] < 70 {
				row = 1
			}
			lastLabelX[row] = px
			anchor := "middle"
			if px > svgRight-40 {
				anchor = "end"
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="12" font-weight="600" fill="%s" text-anchor="%s">%s</text>`,
				px, 12+row*14, c, anchor, html.EscapeString(label))
		}
		b.WriteString(`</g>`)
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// legendSVG is the key to the marks, drawn once per page.
func legendSVG() string {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d 28" width="100%%" role="img" aria-label="legend">`, svgWidth)
	px := 10.0
	for _, k := range eventKinds {
		c := kindColour[k]
		switch k {
		case EventData:
			fmt.Fprintf(&b, `<rect x="%.0f" y="6" width="4" height="16" fill="%s"/>`, px, c)
		case EventAck:
			fmt.Fprintf(&b, `<rect x="%.0f" y="9" width="2" height="10" fill="%s"/>`, px+1, c)
		case EventProbe:
			fmt.Fprintf(&b, `<path d="M%.0f 20 l-6 -12 h12 z" fill="%s"/>`, px+2, c)
		case EventProbeAck:
			fmt.Fprintf(&b, `<path d="M%.0f 8 l-6 12 h12 z" fill="%s"/>`, px+2, c)
		case EventExpiry:
			fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="4" y2="24" stroke="%s" stroke-width="2" stroke-dasharray="4 3"/>`, px+2, px+2, c)
		case EventRST:
			fmt.Fprintf(&b, `<path d="M%.0f 8 l12 12 m0 -12 l-12 12" stroke="%s" stroke-width="3"/>`, px-4, c)
		case EventResponse:
			fmt.Fprintf(&b, `<circle cx="%.0f" cy="14" r="7" fill="%s"/>`, px+2, c)
		case EventTimeout:
			fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="4" y2="24" stroke="%s" stroke-width="3"/>`, px+2, px+2, c)
		default:
			fmt.Fprintf(&b, `<circle cx="%.0f" cy="14" r="3.5" fill="none" stroke="%s" stroke-width="1.5"/>`, px+2, c)
		}
		name := k.Describe()
		if k == EventNote {
			name = "conntrack / other"
		}
		fmt.Fprintf(&b, `<text x="%.0f" y="18" font-size="12" fill="#1d2430">%s</text>`, px+14, html.EscapeString(name))
		px += 30 + float64(len(name))*7
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// tickStep picks 1, 2 or 5 × 10^n seconds (or minute/hour multiples) so a
// lane has about eight ticks.
func tickStep(end float64) float64 {
	nice := []float64{0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400}
	for _, s := range nice {
		if end/s <= 10 {
			return s
		}
	}
	return math.Ceil(end/10/86400) * 86400
}

func axisLabel(s, step float64) string {
	switch {
	case step >= 3600 && math.Mod(s, 3600) == 0:
		return fmt.Sprintf("%.0fh", s/3600)
	case step >= 60 && math.Mod(s, 60) == 0:
		return fmt.Sprintf("%.0fm", s/60)
	}
	return fmtSeconds(s)
}

func attr(s string) string { return html.EscapeString(s) }
