// Package params reads the bitnami-style `## @param` comments of a chart's
// values.yaml, checks that they cover every value, and renders the README
// parameter table from them.
//
// Supported comment forms (a subset of bitnami's readme-generator):
//
//	## @section Title                    starts a table section
//	## @param path[ [modifiers]] text    documents the value at path
//	## @skip path                        excludes path (and below) from the checks and the table
//
// Modifiers, in brackets after the path, change the Value column: [array] → `[]`,
// [object] → `{}`, [string] → `""`, [default: X] → `X`.
package params

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// Param is one `## @param` comment.
type Param struct {
	Path        string
	Description string
	Modifiers   []string
	Section     string
	Line        int
}

// Values holds the parsed values.yaml and its @param comments.
type Values struct {
	Tree     map[string]any
	Params   []Param
	Sections []string
	Skips    []string
}

var (
	paramRe   = regexp.MustCompile(`^\s*##\s*@param\s+(\S+)\s*(?:\[([^\]]*)\])?\s*(.*?)\s*$`)
	sectionRe = regexp.MustCompile(`^\s*##\s*@section\s+(.+?)\s*$`)
	skipRe    = regexp.MustCompile(`^\s*##\s*@skip\s+(\S+)\s*$`)
)

// Parse reads values.yaml text.
func Parse(text []byte) (*Values, error) {
	v := &Values{}
	if err := yaml.Unmarshal(text, &v.Tree); err != nil {
		return nil, fmt.Errorf("values.yaml: %w", err)
	}
	if v.Tree == nil {
		v.Tree = map[string]any{}
	}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(text))
	for line := 1; sc.Scan(); line++ {
		l := sc.Text()
		if m := sectionRe.FindStringSubmatch(l); m != nil {
			section = m[1]
			v.Sections = append(v.Sections, section)
			continue
		}
		if m := skipRe.FindStringSubmatch(l); m != nil {
			v.Skips = append(v.Skips, m[1])
			continue
		}
		if m := paramRe.FindStringSubmatch(l); m != nil {
			var mods []string
			for _, s := range strings.Split(m[2], ",") {
				if s = strings.TrimSpace(s); s != "" {
					mods = append(mods, s)
				}
			}
			v.Params = append(v.Params, Param{Path: m[1], Description: m[3], Modifiers: mods, Section: section, Line: line})
		}
	}
	return v, sc.Err()
}

// Lookup returns the value at a dotted path.
func Lookup(tree map[string]any, path string) (any, bool) {
	var cur any = tree
	for _, key := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[key]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// Leaves lists the dotted paths of every value a @param must document: scalars,
// lists and empty maps. Non-empty maps are descended into.
func Leaves(tree map[string]any) []string {
	var out []string
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, val := range m {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			if sub, ok := val.(map[string]any); ok && len(sub) > 0 {
				walk(p, sub)
				continue
			}
			out = append(out, p)
		}
	}
	walk("", tree)
	sort.Strings(out)
	return out
}

func covered(path string, prefixes map[string]bool) bool {
	for p := path; ; {
		if prefixes[p] {
			return true
		}
		i := strings.LastIndex(p, ".")
		if i < 0 {
			return false
		}
		p = p[:i]
	}
}

// Problems lists what is wrong between the values and their @param comments:
// values without a @param, @params without a value, duplicates, empty descriptions.
func (v *Values) Problems() []string {
	var out []string
	documented := map[string]bool{}
	for _, s := range v.Skips {
		documented[s] = true
	}
	for _, p := range v.Params {
		if documented[p.Path] {
			out = append(out, fmt.Sprintf("values.yaml:%d: duplicate @param %s", p.Line, p.Path))
		}
		documented[p.Path] = true
		if _, ok := Lookup(v.Tree, p.Path); !ok {
			out = append(out, fmt.Sprintf("values.yaml:%d: @param %s names no value", p.Line, p.Path))
		}
		if p.Description == "" {
			out = append(out, fmt.Sprintf("values.yaml:%d: @param %s has no description", p.Line, p.Path))
		}
	}
	for _, leaf := range Leaves(v.Tree) {
		if !covered(leaf, documented) {
			out = append(out, fmt.Sprintf("values.yaml: %s has no ## @param comment", leaf))
		}
	}
	return out
}

var cellEscaper = strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;")

// cell escapes what would break a Markdown table cell or read as HTML.
func cell(s string) string {
	return cellEscaper.Replace(s)
}

func render(val any, mods []string) string {
	for _, m := range mods {
		switch {
		case m == "array":
			return "`[]`"
		case m == "object":
			return "`{}`"
		case m == "string":
			return "`\"\"`"
		case strings.HasPrefix(m, "default:"):
			return "`" + strings.TrimSpace(strings.TrimPrefix(m, "default:")) + "`"
		}
	}
	switch x := val.(type) {
	case nil:
		return "`nil`"
	case string:
		if x == "" {
			return "`\"\"`"
		}
		return "`" + x + "`"
	case map[string]any, []any:
		b, _ := json.Marshal(x)
		return "`" + string(b) + "`"
	default:
		return fmt.Sprintf("`%v`", x)
	}
}

// Table renders the README parameter tables, one per @section.
func (v *Values) Table() string {
	var b strings.Builder
	section := "\x00"
	for _, p := range v.Params {
		if p.Section != section {
			section = p.Section
			if b.Len() > 0 {
				b.WriteString("\n")
			}
			if section != "" {
				fmt.Fprintf(&b, "### %s\n\n", section)
			}
			b.WriteString("| Name | Description | Value |\n| ---- | ----------- | ----- |\n")
		}
		val, _ := Lookup(v.Tree, p.Path)
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", p.Path, cell(p.Description), strings.ReplaceAll(render(val, p.Modifiers), "|", `\|`))
	}
	return b.String()
}

// Markers delimit the generated part of the README.
const (
	BeginMarker = "<!-- parameters:begin (generated from values.yaml by `bash scripts/test-helm.sh --update-readme`; do not edit) -->"
	EndMarker   = "<!-- parameters:end -->"
)

// UpdateReadme replaces the text between the markers with the table.
func UpdateReadme(readme, table string) (string, error) {
	i := strings.Index(readme, BeginMarker)
	j := strings.Index(readme, EndMarker)
	if i < 0 || j < i {
		return "", fmt.Errorf("README has no %q ... %q block", BeginMarker, EndMarker)
	}
	return readme[:i+len(BeginMarker)] + "\n\n" + table + "\n" + readme[j:], nil
}
