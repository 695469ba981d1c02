package helm_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"cner/test/helm/params"
)

func loadValues(t *testing.T) *params.Values {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(chartDir(), "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := params.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func loadSchema(t *testing.T) map[string]any {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(chartDir(), "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(text, &s); err != nil {
		t.Fatalf("values.schema.json: %v", err)
	}
	return s
}

// resolve follows a local "#/definitions/x" $ref.
func resolve(root, node map[string]any) map[string]any {
	for i := 0; i < 10; i++ {
		ref, ok := node["$ref"].(string)
		if !ok {
			return node
		}
		target, _ := asMap(getAll(root, strings.Split(strings.TrimPrefix(ref, "#/"), "/")))
		if target == nil {
			return node
		}
		node = target
	}
	return node
}

func getAll(root map[string]any, path []string) any {
	var anyPath []any
	for _, p := range path {
		anyPath = append(anyPath, p)
	}
	return get(root, anyPath...)
}

// Helm rejects values the schema does not know, at every depth.
func TestSchemaRejectsUnknownKeys(t *testing.T) {
	cases := [][]string{
		{"replicas=3"}, // a plausible typo of replicaCount
		{"kafka.tls.bogus=true"},
		{"keda.maxReplicaCount=3"},
		{"training.image.name=x"},
		{"tolerations[0].key=a", "tolerations[0].bogus=b"},
		{"extraEnv[0].name=A", "extraEnv[0].valu=b"},
		{"resources.limit.cpu=1"},
		{"training.steps[0].name=x", "training.steps[0].args[0]=train", "training.steps[0].image=y"},
	}
	for _, sets := range cases {
		msg := renderFails(t, "default", sets...)
		if !strings.Contains(msg, "additional properties") && !strings.Contains(msg, "additionalProperties") {
			t.Errorf("%v: want the schema to reject the unknown key, got %q", sets, msg)
		}
	}
	// And wrong types or values.
	for _, sets := range [][]string{
		{"replicaCount=-1"}, {"--set-json=inference.shadowFraction=2"}, {"kafka.sasl.mechanism=PLAIN"},
		{"logLevel=verbose"}, {"image.pullPolicy=Sometimes"}, {"service.port=70000"},
		{"kafka.brokers=no-port"}, {"training.runId=Bad_Id"},
	} {
		renderFails(t, "default", sets...)
	}
}

// The schema is strict: every object with properties is closed, free-form maps say
// what their values are, and every property is described.
func TestSchemaIsStrictAndDescribed(t *testing.T) {
	root := loadSchema(t)
	var walk func(path string, node map[string]any)
	walk = func(path string, node map[string]any) {
		if node == nil {
			return
		}
		if _, isRef := node["$ref"]; isRef {
			return // checked where the definition is walked
		}
		for _, alt := range []string{"oneOf", "anyOf", "allOf"} {
			for i, sub := range list(node, alt) {
				m, _ := asMap(sub)
				walk(path+"/"+alt+"/"+string(rune('0'+i)), m)
			}
		}
		isObject := node["type"] == "object"
		if props, ok := asMap(node["properties"]); ok {
			if node["additionalProperties"] != false {
				t.Errorf("%s: has properties but additionalProperties is %v, want false", path, node["additionalProperties"])
			}
			keys := make([]string, 0, len(props))
			for k := range props {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				p, _ := asMap(props[k])
				if d, _ := p["description"].(string); strings.TrimSpace(d) == "" {
					t.Errorf("%s/%s: no description", path, k)
				}
				walk(path+"/"+k, p)
			}
		} else if isObject {
			ap, present := node["additionalProperties"]
			switch {
			case !present:
				// Kubernetes pass-through objects (valueFrom, labelSelector, affinity
				// terms) are validated by the API server; they must say so.
				if d, _ := node["description"].(string); !strings.Contains(d, "Kubernetes") {
					t.Errorf("%s: open object that is not a Kubernetes pass-through type", path)
				}
			case ap == true:
				t.Errorf("%s: additionalProperties true", path)
			default:
				if m, ok := asMap(ap); ok {
					walk(path+"/additionalProperties", m)
				}
			}
		}
		if items, ok := asMap(node["items"]); ok {
			walk(path+"/items", items)
		}
	}
	walk("#", root)
	defs, _ := asMap(root["definitions"])
	for name, d := range defs {
		m, _ := asMap(d)
		walk("#/definitions/"+name, m)
	}
	if root["additionalProperties"] != false {
		t.Error("root: additionalProperties is not false")
	}
}

// Every value has a ## @param comment, every @param names a value, and the schema
// describes each @param with the same words.
func TestEveryValueHasParamAndSchema(t *testing.T) {
	v := loadValues(t)
	for _, p := range v.Problems() {
		t.Error(p)
	}
	root := loadSchema(t)
	documented := map[string]bool{}
	for _, p := range v.Params {
		documented[p.Path] = true
		node := schemaNode(root, p.Path)
		if node == nil {
			t.Errorf("@param %s: no property in values.schema.json", p.Path)
			continue
		}
		if d, _ := node["description"].(string); d != p.Description {
			t.Errorf("%s: schema description %q differs from the @param description %q", p.Path, d, p.Description)
		}
	}
	// Conversely: every schema property is a @param or an object holding @params.
	var walk func(prefix string, node map[string]any)
	walk = func(prefix string, node map[string]any) {
		props, _ := asMap(resolve(root, node)["properties"])
		for k, sub := range props {
			path := strings.TrimPrefix(prefix+"."+k, ".")
			if documented[path] {
				continue
			}
			subMap, _ := asMap(sub)
			if _, hasProps := resolve(root, subMap)["properties"]; !hasProps {
				t.Errorf("schema property %s has no @param in values.yaml", path)
				continue
			}
			walk(path, subMap)
		}
	}
	walk("", root)
}

// schemaNode finds the schema of a dotted values path (without following into $refs
// at the last step, so the description next to a $ref counts).
func schemaNode(root map[string]any, path string) map[string]any {
	node := root
	for _, key := range strings.Split(path, ".") {
		props, _ := asMap(resolve(root, node)["properties"])
		next, ok := asMap(props[key])
		if !ok {
			return nil
		}
		node = next
	}
	return node
}

// The README parameter table is generated from values.yaml and must be current.
func TestReadmeParametersUpToDate(t *testing.T) {
	v := loadValues(t)
	readme, err := os.ReadFile(filepath.Join(chartDir(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := params.UpdateReadme(string(readme), v.Table())
	if err != nil {
		t.Fatal(err)
	}
	if want != string(readme) {
		t.Error("helm/cner/README.md parameter table is stale: run `bash scripts/test-helm.sh --update-readme`")
	}
	for _, p := range v.Params {
		if !strings.Contains(string(readme), "| `"+p.Path+"` |") {
			t.Errorf("README has no row for %s", p.Path)
		}
	}
}
