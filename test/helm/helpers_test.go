package helm_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	"sigs.k8s.io/yaml"
)

// The tests run the real helm binary (HELM, default .cache/bin/helm built by
// scripts/helm-tools.sh) against the chart (CNER_CHART, default helm/cner) and
// inspect what `helm template` renders.

const kubeVersion = "1.33.0"

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func chartDir() string {
	if d := os.Getenv("CNER_CHART"); d != "" {
		return d
	}
	return filepath.Join(repoRoot(), "helm", "cner")
}

func helmBin(t *testing.T) string {
	t.Helper()
	h := os.Getenv("HELM")
	if h == "" {
		h = filepath.Join(repoRoot(), ".cache", "bin", "helm")
	}
	if _, err := os.Stat(h); err != nil {
		t.Fatalf("helm not found at %s: run scripts/helm-tools.sh (or set HELM)", h)
	}
	return h
}

// scenario returns the path of ci/<name>-values.yaml.
func scenario(name string) string {
	return filepath.Join(chartDir(), "ci", name+"-values.yaml")
}

func scenarios(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir(), "ci", "*-values.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no ci/*-values.yaml in %s", chartDir())
	}
	var names []string
	for _, f := range files {
		names = append(names, strings.TrimSuffix(filepath.Base(f), "-values.yaml"))
	}
	return names
}

// Obj is one rendered Kubernetes object.
type Obj map[string]any

func (o Obj) Kind() string { return str(o, "kind") }
func (o Obj) Name() string { return str(o, "metadata", "name") }

// get walks maps by key and lists by int index.
func get(v any, path ...any) any {
	cur := v
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := asMap(cur)
			if !ok {
				return nil
			}
			cur = m[k]
		case int:
			l, ok := cur.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			cur = l[k]
		}
	}
	return cur
}

func asMap(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case Obj:
		return m, true
	}
	return nil, false
}

func str(v any, path ...any) string {
	s, _ := get(v, path...).(string)
	return s
}

func list(v any, path ...any) []any {
	l, _ := get(v, path...).([]any)
	return l
}

func toStrings(l []any) []string {
	out := make([]string, len(l))
	for i, v := range l {
		out[i] = fmt.Sprint(v)
	}
	return out
}

func strMap(v any, path ...any) map[string]string {
	m, ok := asMap(get(v, path...))
	if !ok {
		return nil
	}
	out := map[string]string{}
	for k, val := range m {
		out[k] = fmt.Sprint(val)
	}
	return out
}

type rendered struct {
	objs []Obj
	err  error
	out  string
}

var (
	renderCache   = map[string]rendered{}
	renderCacheMu sync.Mutex
)

// helmTemplate runs `helm template` with the given values files and --set flags
// (a flag that starts with "--", such as --set-json=k=v, is passed as it is).
func helmTemplate(t *testing.T, files []string, sets ...string) ([]Obj, string, error) {
	t.Helper()
	args := []string{"template", "cner", chartDir(), "--namespace", "ner", "--kube-version", kubeVersion}
	for _, f := range files {
		args = append(args, "-f", f)
	}
	for _, s := range sets {
		if strings.HasPrefix(s, "--") { // e.g. --set-json=key=value, verbatim
			args = append(args, s)
		} else {
			args = append(args, "--set", s)
		}
	}
	key := strings.Join(args, "\x00")
	renderCacheMu.Lock()
	defer renderCacheMu.Unlock()
	if r, ok := renderCache[key]; ok {
		return r.objs, r.out, r.err
	}
	cmd := exec.Command(helmBin(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var objs []Obj
	if err == nil {
		objs, err = parseDocs(stdout.String())
	} else {
		err = fmt.Errorf("helm %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	renderCache[key] = rendered{objs, err, stdout.String() + stderr.String()}
	return objs, stdout.String() + stderr.String(), err
}

// render renders a scenario (plus --set flags) and fails the test on error.
func render(t *testing.T, name string, sets ...string) []Obj {
	t.Helper()
	objs, _, err := helmTemplate(t, []string{scenario(name)}, sets...)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// renderFails renders and expects helm to refuse; it returns helm's message.
func renderFails(t *testing.T, name string, sets ...string) string {
	t.Helper()
	objs, out, err := helmTemplate(t, []string{scenario(name)}, sets...)
	if err == nil {
		t.Fatalf("helm template %s %v rendered %d objects, want a failure", name, sets, len(objs))
	}
	return out
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

func parseDocs(text string) ([]Obj, error) {
	var objs []Obj
	for _, doc := range docSep.Split(text, -1) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var o Obj
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			return nil, fmt.Errorf("rendered YAML does not parse: %v\n%s", err, doc)
		}
		if o != nil {
			objs = append(objs, o)
		}
	}
	return objs, nil
}

func byKind(objs []Obj, kind string) []Obj {
	var out []Obj
	for _, o := range objs {
		if o.Kind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func one(t *testing.T, objs []Obj, kind string) Obj {
	t.Helper()
	found := byKind(objs, kind)
	if len(found) != 1 {
		t.Fatalf("want exactly one %s, got %d (%s)", kind, len(found), kinds(objs))
	}
	return found[0]
}

func none(t *testing.T, objs []Obj, kinds ...string) {
	t.Helper()
	for _, k := range kinds {
		if n := len(byKind(objs, k)); n > 0 {
			t.Errorf("want no %s, got %d", k, n)
		}
	}
}

func kinds(objs []Obj) string {
	var ks []string
	for _, o := range objs {
		ks = append(ks, o.Kind()+"/"+o.Name())
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}

// podSpec returns the pod template spec of a Deployment or Job.
func podSpec(o Obj) map[string]any {
	m, _ := asMap(get(o, "spec", "template", "spec"))
	return m
}

// containers returns init and regular containers of a pod spec.
func containers(spec map[string]any) []map[string]any {
	var out []map[string]any
	for _, field := range []string{"initContainers", "containers"} {
		for _, c := range list(spec, field) {
			if m, ok := asMap(c); ok {
				out = append(out, m)
			}
		}
	}
	return out
}

func container(t *testing.T, spec map[string]any, name string) map[string]any {
	t.Helper()
	for _, c := range containers(spec) {
		if str(c, "name") == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

// env returns the container's env entries by name.
func env(c map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, e := range list(c, "env") {
		if m, ok := asMap(e); ok {
			out[str(m, "name")] = m
		}
	}
	return out
}

func envValue(t *testing.T, c map[string]any, name string) string {
	t.Helper()
	e, ok := env(c)[name]
	if !ok {
		t.Fatalf("container %s has no env %s", str(c, "name"), name)
	}
	v, isString := e["value"].(string)
	if !isString {
		t.Fatalf("env %s: want a literal string value, got %#v", name, e)
	}
	return v
}

// matches reports whether labels satisfy a matchLabels selector.
func matches(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
