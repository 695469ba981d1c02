package helm_test

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// processorVariables reads the names in VARIABLES of src/config.ts: every
// environment variable the processor reads (the README configuration table is
// checked against the same list by test/config.test.ts).
func processorVariables(t *testing.T) map[string]bool {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(repoRoot(), "src", "config.ts"))
	if err != nil {
		t.Fatal(err)
	}
	src := string(text)
	start := strings.Index(src, "export const VARIABLES")
	end := strings.Index(src, "] satisfies VariableSpec[]")
	if start < 0 || end < start {
		t.Fatal("src/config.ts: no `export const VARIABLES ... ] satisfies VariableSpec[]` block (update this test with the file)")
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`\{\s*name:\s*'([A-Z][A-Z0-9_]*)'`).FindAllStringSubmatch(src[start:end], -1) {
		names[m[1]] = true
	}
	if len(names) < 20 || !names["KAFKA_BROKERS"] || !names["SCHEMA_REGISTRY_URL"] {
		t.Fatalf("src/config.ts: read %d variables from VARIABLES, which looks wrong: %v", len(names), names)
	}
	return names
}

// processorEnvNames is the env of the processor container as the chart writes
// it (extraEnv is the user's and excluded).
func processorEnvNames(t *testing.T, objs []Obj, extra int) []string {
	t.Helper()
	c := container(t, podSpec(one(t, objs, "Deployment")), "cner")
	var names []string
	for _, e := range list(c, "env") {
		names = append(names, str(e, "name"))
	}
	return names[:len(names)-extra]
}

// Every variable the chart sets is one the processor reads (a misspelt or
// stale name would be ignored, or only warned about, at startup), none is set
// twice, and together the scenarios set every variable the processor knows.
func TestEnvMatchesProcessorVariables(t *testing.T) {
	known := processorVariables(t)
	set := map[string]bool{}
	check := func(label string, names []string) {
		seen := map[string]bool{}
		for _, n := range names {
			if !known[n] {
				t.Errorf("%s: the chart sets %s, which src/config.ts (VARIABLES) does not know", label, n)
			}
			if seen[n] {
				t.Errorf("%s: %s is set twice", label, n)
			}
			seen[n] = true
			set[n] = true
		}
	}
	for _, name := range scenarios(t) {
		check(name, processorEnvNames(t, render(t, name), 0))
	}
	// Optional variables that no scenario sets, and extraEnv (excluded from the check).
	check("default+options", processorEnvNames(t, render(t, "default", "kafka.dltTopic=dead.letters", "kafka.instanceId=node-a", "extraEnv[0].name=SOMETHING_ELSE", "extraEnv[0].value=x"), 1))
	var missing []string
	for n := range known {
		if !set[n] {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("no scenario sets %v: give them chart values (or add a scenario that sets them)", missing)
	}
}

// The optional Kafka settings: defaults equal to the processor's, values passed through,
// and the instance id taken from the pod name unless set.
func TestOptionalKafkaSettings(t *testing.T) {
	c := container(t, podSpec(one(t, render(t, "default"), "Deployment")), "cner")
	for name, want := range map[string]string{
		"KAFKA_SESSION_TIMEOUT_MS":       "30000",
		"KAFKA_CREATE_TOPICS":            "true",
		"KAFKA_TOPIC_PARTITIONS":         "3",
		"KAFKA_TOPIC_REPLICATION_FACTOR": "1",
	} {
		if got := envValue(t, c, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if got := str(env(c)["CNER_INSTANCE_ID"], "valueFrom", "fieldRef", "fieldPath"); got != "metadata.name" {
		t.Errorf("CNER_INSTANCE_ID fieldRef = %q, want metadata.name (the pod name)", got)
	}

	c = container(t, podSpec(one(t, render(t, "default",
		"kafka.instanceId=node-a", "kafka.sessionTimeoutMs=45000", "kafka.createTopics=false",
		"kafka.topicPartitions=12", "kafka.topicReplicationFactor=3"), "Deployment")), "cner")
	for name, want := range map[string]string{
		"CNER_INSTANCE_ID":               "node-a",
		"KAFKA_SESSION_TIMEOUT_MS":       "45000",
		"KAFKA_CREATE_TOPICS":            "false",
		"KAFKA_TOPIC_PARTITIONS":         "12",
		"KAFKA_TOPIC_REPLICATION_FACTOR": "3",
	} {
		if got := envValue(t, c, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}

	for _, bad := range []string{"kafka.sessionTimeoutMs=500", "kafka.topicPartitions=0", "kafka.topicReplicationFactor=0", "kafka.instanceId=has space", "terminationGracePeriodSeconds=9"} {
		renderFails(t, "default", bad)
	}
}
