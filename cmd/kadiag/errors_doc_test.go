package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// productDirs are the packages whose errors reach users.
var productDirs = []string{".", "../../inspect", "../../preload", "../../capture", "../../simulate", "../../middlebox",
	"../../doctor", "../../reports", "../../exporter", "../../path", "../../fix", "../../internal/bpf", "../../internal/pod", "../../nodebox"}

var verb = regexp.MustCompile(`%[-+# 0-9.]*[a-zA-Z]`)

// errorMessages collects the text of every error kadiag's code creates
// (errors.New, fmt.Errorf and the commands' usage errors): what a user can
// see after "kadiag: ".
func errorMessages(t *testing.T) map[string]string {
	msgs := map[string]string{}
	fset := token.NewFileSet()
	for _, dir := range productDirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			file, err := parser.ParseFile(fset, f, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) == 0 {
					return true
				}
				name := ""
				switch fn := call.Fun.(type) {
				case *ast.SelectorExpr:
					if x, ok := fn.X.(*ast.Ident); ok {
						name = x.Name + "." + fn.Sel.Name
					}
				case *ast.Ident:
					name = fn.Name
				}
				if name != "errors.New" && name != "fmt.Errorf" && name != "bad" {
					return true
				}
				lit, ok := call.Args[0].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					return true
				}
				s, err := strconv.Unquote(lit.Value)
				if err == nil {
					msgs[s] = fset.Position(lit.Pos()).String()
				}
				return true
			})
		}
	}
	return msgs
}

// TestErrorsDocumented: the fixed text of every error message is in
// docs/errors.md, so a new error cannot ship without its fix written down.
// Messages that are only context around another error ("extract: %w") have
// no fixed text of their own and are covered by the error they wrap.
func TestErrorsDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/errors.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	msgs := errorMessages(t)
	if len(msgs) < 80 {
		t.Fatalf("found only %d error messages: is the parser looking in the right places?", len(msgs))
	}
	for msg, where := range msgs {
		longest := ""
		for _, part := range verb.Split(msg, -1) {
			part = strings.Trim(part, " :;,.")
			if len(part) > len(longest) {
				longest = part
			}
		}
		if len(longest) < 12 {
			continue
		}
		if !strings.Contains(doc, longest) {
			t.Errorf("%s: error %q is not in docs/errors.md (its text %q)", where, msg, longest)
		}
	}
}
