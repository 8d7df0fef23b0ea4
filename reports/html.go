package reports

import (
	"html/template"
	"io"
)

// WriteHTML writes d as one self-contained HTML page: inline CSS, inline SVG
// timelines, no script, no external resource, so the file can be attached
// to a CI run or mailed and opens anywhere.
func WriteHTML(w io.Writer, d Document) error {
	return htmlPage.Execute(w, d)
}

var htmlPage = template.Must(template.New("page").Funcs(template.FuncMap{
	"timeline": func(t Timeline) template.HTML { return template.HTML(TimelineSVG(t)) },
	"legend":   func() template.HTML { return template.HTML(legendSVG()) },
	"hasTimelines": func(d Document) bool {
		for _, s := range d.Sections {
			if len(s.Timelines) > 0 {
				return true
			}
		}
		return false
	},
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; margin: 0; color: #1d2430; background: #f6f7f9; }
main { max-width: 1180px; margin: 0 auto; padding: 20px 28px 40px; }
h1 { font-size: 24px; margin: 0 0 6px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #d8dde5; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 16px 0 4px; }
.status { display: inline-block; font-weight: 700; border-radius: 4px; padding: 2px 10px; margin-right: 8px; color: #fff; }
.status.ok { background: #1f883d; } .status.failed { background: #cf222e; } .status.info { background: #57606a; }
.summary { font-size: 16px; margin: 8px 0 16px; }
table { border-collapse: collapse; background: #fff; margin: 8px 0; font-size: 13px; }
th, td { border: 1px solid #d8dde5; padding: 4px 8px; text-align: left; vertical-align: top; white-space: nowrap; }
td:last-child { white-space: normal; min-width: 260px; }
.grid { overflow-x: auto; }
th { background: #eef1f5; }
td.good { color: #116329; background: #dafbe1; font-weight: 600; }
td.bad { color: #a40e26; background: #ffebe9; font-weight: 600; }
td.warn { color: #7d4e00; background: #fff8c5; font-weight: 600; }
pre { background: #fff; border: 1px solid #d8dde5; padding: 10px; overflow-x: auto; font-size: 12.5px; }
.timeline { background: #fff; border: 1px solid #d8dde5; border-radius: 6px; padding: 6px 10px; margin: 10px 0; }
.timeline .outcome { font-weight: 600; }
.timeline .outcome.good { color: #116329; } .timeline .outcome.bad { color: #a40e26; } .timeline .outcome.warn { color: #7d4e00; }
svg text { font-family: system-ui, "DejaVu Sans", sans-serif; }
</style>
</head>
<body>
<main>
<h1>{{.Title}}</h1>
<p class="summary"><span class="status {{or .Status "info"}}">{{if eq .Status "ok"}}OK{{else if eq .Status "failed"}}FAILED{{else}}INFO{{end}}</span>{{.Summary}}</p>
{{if hasTimelines .}}<div class="legend">{{legend}}</div>{{end}}
{{range .Sections}}
<section>
{{if .Heading}}<h2>{{.Heading}}</h2>{{end}}
{{range .Text}}<p>{{.}}</p>
{{end}}
{{if .List}}<ul>{{range .List}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{with .Grid}}{{if .Rows}}<div class="grid"><table>
<tr>{{range .Header}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr>{{range .}}<td{{if .Tone}} class="{{.Tone}}"{{end}}>{{.Text}}</td>{{end}}</tr>
{{end}}</table></div>{{end}}{{end}}
{{if .Code}}<pre>{{.Code}}</pre>{{end}}
{{range .Timelines}}<div class="timeline">
<h3>{{.Title}}{{if .Outcome}} — <span class="outcome {{.Tone}}">{{.Outcome}}</span>{{end}}</h3>
{{timeline .}}
</div>
{{end}}
</section>
{{end}}
</main>
</body>
</html>
`))
