package params

import (
	"strings"
	"testing"
)

const sample = `## @section Basics
## @param name Name of the thing
name: ""
nested:
  ## @param nested.count How many | pipes
  count: 3
  ## @param nested.labels [object] Labels
  labels:
    a: b
## @param list Items
list: [1, 2]
## @param missing Not in the values
undocumented: true
## @skip skipped
skipped:
  deep: 1
`

func TestProblems(t *testing.T) {
	v, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(v.Problems(), "\n")
	for _, want := range []string{"@param missing names no value", "undocumented has no ## @param comment"} {
		if !strings.Contains(got, want) {
			t.Errorf("problems %q lack %q", got, want)
		}
	}
	if strings.Contains(got, "skipped") || strings.Contains(got, "nested.labels.a") {
		t.Errorf("skipped or @param-covered values reported: %q", got)
	}
}

func TestTable(t *testing.T) {
	v, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	table := v.Table()
	for _, want := range []string{
		"### Basics\n\n| Name | Description | Value |",
		"| `name` | Name of the thing | `\"\"` |",
		"| `nested.count` | How many \\| pipes | `3` |",
		"| `nested.labels` | Labels | `{}` |",
		"| `list` | Items | `[1,2]` |",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	readme := "# x\n" + BeginMarker + "\nold\n" + EndMarker + "\nrest\n"
	out, err := UpdateReadme(readme, table)
	if err != nil || !strings.Contains(out, table) || strings.Contains(out, "old") || !strings.HasSuffix(out, EndMarker+"\nrest\n") {
		t.Errorf("UpdateReadme = %q, %v", out, err)
	}
	if _, err := UpdateReadme("no markers", table); err == nil {
		t.Error("UpdateReadme without markers: want an error")
	}
}
