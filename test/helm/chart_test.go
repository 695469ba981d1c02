package helm_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every scenario renders, every object parses, and the processor Deployment is there.
func TestScenariosRender(t *testing.T) {
	for _, name := range scenarios(t) {
		t.Run(name, func(t *testing.T) {
			objs := render(t, name)
			one(t, objs, "Deployment")
			one(t, objs, "Service")
			for _, o := range objs {
				if o.Kind() == "" || o.Name() == "" || str(o, "apiVersion") == "" {
					t.Errorf("object without apiVersion/kind/name: %v", o)
				}
				if o.Kind() == "Secret" {
					t.Errorf("the chart must not create Secrets (credentials come from existing ones): %s", o.Name())
				}
			}
		})
	}
}

func TestProbesAndPorts(t *testing.T) {
	d := one(t, render(t, "default"), "Deployment")
	c := container(t, podSpec(d), "cner")
	if got := str(c, "ports", 0, "name"); got != "http-metrics" {
		t.Fatalf("port name = %q", got)
	}
	if got := get(c, "ports", 0, "containerPort"); fmt.Sprint(got) != "9464" {
		t.Errorf("containerPort = %v, want 9464", got)
	}
	for probe, path := range map[string]string{"livenessProbe": "/livez", "readinessProbe": "/readyz", "startupProbe": "/livez"} {
		if got := str(c, probe, "httpGet", "path"); got != path {
			t.Errorf("%s path = %q, want %q", probe, got, path)
		}
		if got := str(c, probe, "httpGet", "port"); got != "http-metrics" {
			t.Errorf("%s port = %q, want the named port http-metrics", probe, got)
		}
	}
	if got := envValue(t, c, "CNER_HTTP_PORT"); got != "9464" {
		t.Errorf("CNER_HTTP_PORT = %q", got)
	}
	svc := one(t, render(t, "default"), "Service")
	if got := str(svc, "spec", "ports", 0, "targetPort"); got != "http-metrics" {
		t.Errorf("Service targetPort = %q", got)
	}
	// Probes can be switched off.
	d = one(t, render(t, "default", "livenessProbe.enabled=false"), "Deployment")
	if get(container(t, podSpec(d), "cner"), "livenessProbe") != nil {
		t.Error("livenessProbe.enabled=false still renders a liveness probe")
	}
}

func TestGracefulTermination(t *testing.T) {
	d := one(t, render(t, "default"), "Deployment")
	grace, ok := get(podSpec(d), "terminationGracePeriodSeconds").(float64)
	if !ok || grace < 60 {
		t.Errorf("terminationGracePeriodSeconds = %v, want >= 60 to drain a batch", get(podSpec(d), "terminationGracePeriodSeconds"))
	}
	c := container(t, podSpec(d), "cner")
	if get(c, "lifecycle", "preStop") != nil {
		t.Error("no preStop hook expected: the processor drains on SIGTERM itself")
	}
	if got := list(c, "args"); len(got) != 1 || got[0] != "serve" {
		t.Errorf("args = %v, want [serve]", got)
	}
}

func TestProcessorEnvironment(t *testing.T) {
	d := one(t, render(t, "default", "--set-json=inference.maxTextLength=1000000", "--set-json=inference.shadowFraction=0.25", "kafka.dltTopic=dead.letters"), "Deployment")
	c := container(t, podSpec(d), "cner")
	want := map[string]string{
		"KAFKA_BROKERS":                 "kafka-0.kafka:9092,kafka-1.kafka:9092",
		"KAFKA_CLIENT_ID":               "cner",
		"KAFKA_GROUP_ID":                "cner",
		"KAFKA_INPUT_TOPIC":             "emr.records.raw",
		"KAFKA_OUTPUT_TOPIC":            "emr.records.entities",
		"KAFKA_DLT_TOPIC":               "dead.letters",
		"KAFKA_MODEL_TOPIC":             "ner.models.versions",
		"KAFKA_TRANSACTIONAL_ID_PREFIX": "cner",
		"KAFKA_SSL":                     "false",
		"SCHEMA_REGISTRY_URL":           "http://schema-registry:8081",
		"CNER_MODEL_DIR":                "default",
		"CNER_LINKER_DIR":               "icd10",
		"CNER_MODEL_CACHE_DIR":          "/var/cache/cner/models",
		"CNER_EXECUTION_PROVIDERS":      "cpu",
		"CNER_INFERENCE_WORKERS":        "1",
		"CNER_INTRA_OP_THREADS":         "1",
		"CNER_MAX_BATCH_SIZE":           "4",
		"CNER_MAX_WAIT_MS":              "5",
		"CNER_MAX_TEXT_LENGTH":          "1000000", // not 1e+06
		"CNER_SHADOW_FRACTION":          "0.25",
		"CNER_LOG_LEVEL":                "info",
	}
	for name, value := range want {
		if got := envValue(t, c, name); got != value {
			t.Errorf("%s = %q, want %q", name, got, value)
		}
	}
	// The transactional id is prefix + '-' + instance id: by default the pod name, from the downward API.
	if got := str(env(c)["CNER_INSTANCE_ID"], "valueFrom", "fieldRef", "fieldPath"); got != "metadata.name" {
		t.Errorf("CNER_INSTANCE_ID fieldRef = %q, want metadata.name", got)
	}
	// Unset optional settings are left to the processor's defaults.
	d = one(t, render(t, "default"), "Deployment")
	c = container(t, podSpec(d), "cner")
	for _, name := range []string{"KAFKA_DLT_TOPIC", "KAFKA_SASL_MECHANISM", "KAFKA_SSL_CA_FILE", "SCHEMA_REGISTRY_USERNAME"} {
		if _, ok := env(c)[name]; ok {
			t.Errorf("%s is set although its value is empty", name)
		}
	}
}

// Every pod the chart creates is hardened, in every scenario.
func TestSecurityContext(t *testing.T) {
	for _, name := range scenarios(t) {
		t.Run(name, func(t *testing.T) {
			pods := 0
			for _, o := range render(t, name) {
				if o.Kind() != "Deployment" && o.Kind() != "Job" {
					continue
				}
				pods++
				spec := podSpec(o)
				psc, _ := asMap(spec["securityContext"])
				if psc["runAsNonRoot"] != true {
					t.Errorf("%s: pod runAsNonRoot = %v", o.Name(), psc["runAsNonRoot"])
				}
				if uid, _ := psc["runAsUser"].(float64); uid < 1 {
					t.Errorf("%s: pod runAsUser = %v, want a non-root UID", o.Name(), psc["runAsUser"])
				}
				if str(psc, "seccompProfile", "type") != "RuntimeDefault" {
					t.Errorf("%s: pod seccompProfile = %v", o.Name(), psc["seccompProfile"])
				}
				if get(spec, "automountServiceAccountToken") != false {
					t.Errorf("%s: the service account token is mounted", o.Name())
				}
				mountsTmp := map[string]bool{}
				for _, c := range containers(spec) {
					cname := o.Name() + "/" + str(c, "name")
					sc, _ := asMap(c["securityContext"])
					checks := map[string]any{
						"runAsNonRoot":             true,
						"readOnlyRootFilesystem":   true,
						"allowPrivilegeEscalation": false,
						"privileged":               false,
					}
					for k, want := range checks {
						if sc[k] != want {
							t.Errorf("%s: securityContext.%s = %v, want %v", cname, k, sc[k], want)
						}
					}
					if drop := list(sc, "capabilities", "drop"); len(drop) != 1 || drop[0] != "ALL" {
						t.Errorf("%s: capabilities.drop = %v, want [ALL]", cname, drop)
					}
					if add := list(sc, "capabilities", "add"); len(add) > 0 {
						t.Errorf("%s: capabilities.add = %v", cname, add)
					}
					if str(sc, "seccompProfile", "type") != "RuntimeDefault" {
						t.Errorf("%s: seccompProfile = %v", cname, sc["seccompProfile"])
					}
					for _, m := range list(c, "volumeMounts") {
						if str(m, "mountPath") == "/tmp" {
							mountsTmp[cname] = true
						}
					}
					if !mountsTmp[cname] {
						t.Errorf("%s: /tmp is not a writable volume (the root filesystem is read-only)", cname)
					}
				}
			}
			if pods == 0 {
				t.Fatal("no pod templates rendered")
			}
		})
	}
}

// The model cache and /tmp are writable volumes; the root filesystem is not.
func TestWritableVolumes(t *testing.T) {
	d := one(t, render(t, "default"), "Deployment")
	spec := podSpec(d)
	volumes := map[string]map[string]any{}
	for _, v := range list(spec, "volumes") {
		m, _ := asMap(v)
		volumes[str(m, "name")] = m
	}
	c := container(t, spec, "cner")
	cacheDir := envValue(t, c, "CNER_MODEL_CACHE_DIR")
	mounts := map[string]string{}
	for _, m := range list(c, "volumeMounts") {
		mounts[str(m, "mountPath")] = str(m, "name")
		if get(m, "readOnly") == true && (str(m, "mountPath") == cacheDir || str(m, "mountPath") == "/tmp") {
			t.Errorf("%s is mounted read-only", str(m, "mountPath"))
		}
	}
	for _, path := range []string{cacheDir, "/tmp"} {
		vol, ok := volumes[mounts[path]]
		if !ok {
			t.Fatalf("nothing mounted at %s", path)
		}
		if get(vol, "emptyDir") == nil {
			t.Errorf("%s: want an emptyDir by default, got %v", path, vol)
		}
	}
	// The cache can be a PVC instead.
	d = one(t, render(t, "default", "model.cache.existingClaim=model-cache"), "Deployment")
	for _, v := range list(podSpec(d), "volumes") {
		if str(v, "name") == "model-cache" && str(v, "persistentVolumeClaim", "claimName") != "model-cache" {
			t.Errorf("model.cache.existingClaim not used: %v", v)
		}
	}
}

func TestGPU(t *testing.T) {
	objs := render(t, "gpu")
	d := one(t, objs, "Deployment")
	spec := podSpec(d)
	c := container(t, spec, "cner")
	gpus := get(c, "resources", "limits", "nvidia.com/gpu")
	if n, ok := gpus.(float64); !ok || n != 1 {
		t.Errorf("limits nvidia.com/gpu = %#v, want the whole number 1", gpus)
	}
	if get(c, "resources", "requests", "nvidia.com/gpu") != nil {
		t.Error("nvidia.com/gpu must be in limits only, not requests")
	}
	if got := envValue(t, c, "CNER_EXECUTION_PROVIDERS"); got != "cuda,cpu" {
		t.Errorf("CNER_EXECUTION_PROVIDERS = %q, want cuda,cpu", got)
	}
	if got := str(c, "image"); got != "cner:1.2.3-cuda" {
		t.Errorf("image = %q, want the CUDA variant cner:1.2.3-cuda", got)
	}
	ns := strMap(spec, "nodeSelector")
	if ns["nvidia.com/gpu.present"] != "true" || ns["topology.kubernetes.io/zone"] != "zone-a" {
		t.Errorf("nodeSelector = %v, want the GPU selector merged with the user's", ns)
	}
	tolerated := map[string]bool{}
	for _, tol := range list(spec, "tolerations") {
		tolerated[str(tol, "key")] = true
	}
	if !tolerated["nvidia.com/gpu"] || !tolerated["dedicated"] {
		t.Errorf("tolerations = %v, want the GPU toleration and the user's", list(spec, "tolerations"))
	}
	// More GPUs: still a whole number in limits.
	c = container(t, podSpec(one(t, render(t, "gpu", "gpu.count=2"), "Deployment")), "cner")
	if n, _ := get(c, "resources", "limits", "nvidia.com/gpu").(float64); n != 2 {
		t.Errorf("gpu.count=2: limits = %v", get(c, "resources", "limits"))
	}
	// The CPU default has no GPU anywhere.
	for _, o := range render(t, "default") {
		if o.Kind() == "Deployment" {
			c := container(t, podSpec(o), "cner")
			if get(c, "resources", "limits", "nvidia.com/gpu") != nil || podSpec(o)["tolerations"] != nil {
				t.Error("default scenario requests a GPU or tolerates GPU taints")
			}
		}
	}
	// Fractions, zero and hand-written GPU resources are refused.
	for _, bad := range [][]string{{"gpu.count=0"}, {"gpu.count=half"}} {
		renderFails(t, "gpu", bad...)
	}
	if msg := renderFails(t, "gpu", "resources.requests.nvidia\\.com/gpu=1"); !strings.Contains(msg, "limits only") {
		t.Errorf("GPU in resources.requests: message %q does not explain", msg)
	}
}

// With an autoscaler the Deployment has no replicas field; without one it does.
func TestReplicasOwnership(t *testing.T) {
	cases := []struct {
		scenario   string
		autoscaler string
	}{{"default", ""}, {"hpa", "HorizontalPodAutoscaler"}, {"keda", "ScaledObject"}}
	for _, tc := range cases {
		t.Run(tc.scenario, func(t *testing.T) {
			objs := render(t, tc.scenario)
			d := one(t, objs, "Deployment")
			spec, _ := asMap(d["spec"])
			_, hasReplicas := spec["replicas"]
			if tc.autoscaler == "" {
				if !hasReplicas {
					t.Error("no autoscaler: want spec.replicas")
				}
				none(t, objs, "HorizontalPodAutoscaler", "ScaledObject")
				return
			}
			if hasReplicas {
				t.Errorf("%s owns the Deployment: spec.replicas must be absent, got %v", tc.autoscaler, spec["replicas"])
			}
			a := one(t, objs, tc.autoscaler)
			ref := get(a, "spec", "scaleTargetRef")
			if str(ref, "kind") != "Deployment" || str(ref, "name") != d.Name() || str(ref, "apiVersion") != "apps/v1" {
				t.Errorf("scaleTargetRef = %v, want apps/v1 Deployment %s", ref, d.Name())
			}
			if tc.autoscaler == "HorizontalPodAutoscaler" {
				if str(a, "apiVersion") != "autoscaling/v2" {
					t.Errorf("HPA apiVersion = %s, want autoscaling/v2", str(a, "apiVersion"))
				}
				none(t, objs, "ScaledObject")
			} else {
				none(t, objs, "HorizontalPodAutoscaler")
			}
		})
	}
}

// Transactional ids are per input partition, shared by every pod, so a fixed
// instance id (it only names the pod's model cache and reader) is fine with many
// replicas; the processor's stop guard follows the pod's grace period.
func TestInstanceIDAndGracePeriod(t *testing.T) {
	for _, sets := range [][]string{{"replicaCount=2"}, {"hpa.enabled=true"}, {"keda.enabled=true"}} {
		render(t, "default", append([]string{"kafka.instanceId=cner-a"}, sets...)...)
	}
	for _, grace := range []string{"60", "45"} {
		spec := podSpec(one(t, render(t, "default", "terminationGracePeriodSeconds="+grace), "Deployment"))
		if got := envValue(t, container(t, spec, "cner"), "CNER_SHUTDOWN_GRACE_SECONDS"); got != grace {
			t.Errorf("CNER_SHUTDOWN_GRACE_SECONDS = %q, want %s (terminationGracePeriodSeconds)", got, grace)
		}
	}
	renderFails(t, "default", "terminationGracePeriodSeconds=5")
}

func TestAutoscalersAreExclusive(t *testing.T) {
	for _, name := range []string{"default", "keda", "hpa"} {
		msg := renderFails(t, name, "hpa.enabled=true", "keda.enabled=true")
		if !strings.Contains(msg, "hpa.enabled and keda.enabled are mutually exclusive") {
			t.Errorf("%s: both autoscalers enabled: want a clear failure, got %q", name, msg)
		}
	}
}

func TestKedaKafkaTrigger(t *testing.T) {
	objs := render(t, "keda")
	so := one(t, objs, "ScaledObject")
	d := one(t, objs, "Deployment")
	c := container(t, podSpec(d), "cner")
	if got := get(so, "spec", "maxReplicaCount"); fmt.Sprint(got) != "12" {
		t.Errorf("maxReplicaCount = %v", got)
	}
	if got := get(so, "spec", "minReplicaCount"); fmt.Sprint(got) != "0" {
		t.Errorf("minReplicaCount = %v", got)
	}
	triggers := list(so, "spec", "triggers")
	if len(triggers) != 1 || str(triggers[0], "type") != "kafka" {
		t.Fatalf("triggers = %v, want one kafka trigger", triggers)
	}
	md := strMap(triggers[0], "metadata")
	want := map[string]string{
		"bootstrapServers":       envValue(t, c, "KAFKA_BROKERS"),
		"consumerGroup":          envValue(t, c, "KAFKA_GROUP_ID"),
		"topic":                  envValue(t, c, "KAFKA_INPUT_TOPIC"),
		"lagThreshold":           "500",
		"activationLagThreshold": "10",
		"allowIdleConsumers":     "false",
		"sasl":                   "scram_sha512",
		"tls":                    "enable",
	}
	for k, v := range want {
		if md[k] != v {
			t.Errorf("trigger metadata %s = %q, want %q", k, md[k], v)
		}
	}
	// KEDA metadata values are strings.
	for k, v := range get(triggers[0], "metadata").(map[string]any) {
		if _, ok := v.(string); !ok {
			t.Errorf("trigger metadata %s = %#v is not a string", k, v)
		}
	}
	ta := one(t, objs, "TriggerAuthentication")
	if str(triggers[0], "authenticationRef", "name") != ta.Name() {
		t.Errorf("authenticationRef %q does not name the TriggerAuthentication %q", str(triggers[0], "authenticationRef", "name"), ta.Name())
	}
	refs := map[string]string{}
	for _, r := range list(ta, "spec", "secretTargetRef") {
		refs[str(r, "parameter")] = str(r, "name") + "/" + str(r, "key")
	}
	wantRefs := map[string]string{"username": "kafka-user/username", "password": "kafka-user/password", "ca": "kafka-ca/ca.crt"}
	if !sameMap(refs, wantRefs) {
		t.Errorf("TriggerAuthentication secretTargetRef = %v, want %v", refs, wantRefs)
	}
	// No credentials: no TriggerAuthentication.
	objs = render(t, "default", "keda.enabled=true")
	none(t, objs, "TriggerAuthentication")
	if get(one(t, objs, "ScaledObject"), "spec", "triggers", 0, "authenticationRef") != nil {
		t.Error("authenticationRef without credentials")
	}
}

func TestMaxReplicasCappedByPartitions(t *testing.T) {
	msg := renderFails(t, "keda", "keda.maxReplicas=13")
	if !strings.Contains(msg, "keda.maxReplicas (13) exceeds kafka.inputPartitions (12)") {
		t.Errorf("keda.maxReplicas > partitions: got %q", msg)
	}
	so := one(t, render(t, "keda", "keda.maxReplicas=13", "keda.allowIdleConsumers=true"), "ScaledObject")
	if got := str(so, "spec", "triggers", 0, "metadata", "allowIdleConsumers"); got != "true" {
		t.Errorf("allowIdleConsumers = %q", got)
	}
	msg = renderFails(t, "hpa", "hpa.maxReplicas=9")
	if !strings.Contains(msg, "hpa.maxReplicas (9) exceeds kafka.inputPartitions (8)") {
		t.Errorf("hpa.maxReplicas > partitions: got %q", msg)
	}
	if msg := renderFails(t, "keda", "keda.minReplicas=5", "keda.maxReplicas=4"); !strings.Contains(msg, "must not exceed") {
		t.Errorf("keda min > max: got %q", msg)
	}
}

// Credentials come from existing Secrets through secretKeyRef, never as literal values.
func TestSecretsWiredViaSecretKeyRef(t *testing.T) {
	objs := render(t, "existing-secrets")
	none(t, objs, "Secret", "ServiceAccount")
	d := one(t, objs, "Deployment")
	spec := podSpec(d)
	c := container(t, spec, "cner")
	wantRefs := map[string]string{
		"KAFKA_SASL_USERNAME":      "kafka-user/user",
		"KAFKA_SASL_PASSWORD":      "kafka-user/pass",
		"SCHEMA_REGISTRY_USERNAME": "schema-registry-auth/username",
		"SCHEMA_REGISTRY_PASSWORD": "schema-registry-auth/password",
	}
	e := env(c)
	for name, ref := range wantRefs {
		sk := get(e[name], "valueFrom", "secretKeyRef")
		if got := str(sk, "name") + "/" + str(sk, "key"); got != ref {
			t.Errorf("%s secretKeyRef = %q, want %q", name, got, ref)
		}
		if _, literal := e[name]["value"]; literal {
			t.Errorf("%s has a literal value", name)
		}
	}
	if got := envValue(t, c, "KAFKA_SASL_MECHANISM"); got != "scram-sha-256" {
		t.Errorf("KAFKA_SASL_MECHANISM = %q", got)
	}
	if got := envValue(t, c, "KAFKA_SSL"); got != "true" {
		t.Errorf("KAFKA_SSL = %q", got)
	}
	// TLS PEM files: mounted read-only from the Secret, paths passed in env.
	var tlsDir string
	for _, m := range list(c, "volumeMounts") {
		if str(m, "name") == "kafka-tls" {
			tlsDir = str(m, "mountPath")
			if get(m, "readOnly") != true {
				t.Error("kafka-tls mount is not read-only")
			}
		}
	}
	if tlsDir == "" {
		t.Fatal("kafka-tls is not mounted")
	}
	for name, key := range map[string]string{"KAFKA_SSL_CA_FILE": "ca.crt", "KAFKA_SSL_CERT_FILE": "tls.crt", "KAFKA_SSL_KEY_FILE": "tls.key"} {
		if got := envValue(t, c, name); got != tlsDir+"/"+key {
			t.Errorf("%s = %q, want %q", name, got, tlsDir+"/"+key)
		}
	}
	found := false
	for _, v := range list(spec, "volumes") {
		if str(v, "name") == "kafka-tls" {
			found = str(v, "secret", "secretName") == "kafka-tls"
		}
	}
	if !found {
		t.Error("kafka-tls volume does not come from Secret kafka-tls")
	}
	if got := str(spec, "serviceAccountName"); got != "cner-runtime" {
		t.Errorf("serviceAccountName = %q, want the existing cner-runtime", got)
	}
	if got := str(spec, "imagePullSecrets", 0, "name"); got != "regcred" {
		t.Errorf("imagePullSecrets = %v", spec["imagePullSecrets"])
	}
	// Nowhere in any scenario does an env var that looks like a credential carry a literal value.
	for _, name := range scenarios(t) {
		for _, o := range render(t, name) {
			if o.Kind() != "Deployment" && o.Kind() != "Job" {
				continue
			}
			for _, c := range containers(podSpec(o)) {
				for n, ev := range env(c) {
					if (strings.Contains(n, "PASSWORD") || strings.Contains(n, "USERNAME")) && ev["value"] != nil {
						t.Errorf("%s: %s/%s: %s has a literal value", name, o.Name(), str(c, "name"), n)
					}
				}
			}
		}
	}
}

func TestCredentialValidation(t *testing.T) {
	cases := []struct {
		sets []string
		want string
	}{
		{[]string{"kafka.sasl.mechanism=plain"}, "kafka.sasl.existingSecret is empty"},
		{[]string{"kafka.sasl.existingSecret=s"}, "kafka.sasl.mechanism is empty"},
		{[]string{"kafka.tls.existingSecret=s"}, "kafka.tls.enabled is false"},
		{[]string{"kafka.tls.enabled=true", "kafka.tls.existingSecret=s", "kafka.tls.certKey=tls.crt"}, "go together"},
		{[]string{"kafka.sasl.mechanism=gssapi", "kafka.sasl.existingSecret=s"}, "kafka/sasl/mechanism"},
		{[]string{"kafka.brokers="}, "kafka.brokers is required"},
		{[]string{"schemaRegistry.url="}, "schemaRegistry.url is required"},
	}
	for _, tc := range cases {
		if msg := renderFails(t, "default", tc.sets...); !strings.Contains(msg, tc.want) {
			t.Errorf("%v: want a message containing %q, got %q", tc.sets, tc.want, msg)
		}
	}
}

func TestPodDisruptionBudget(t *testing.T) {
	objs := render(t, "default")
	pdb := one(t, objs, "PodDisruptionBudget")
	d := one(t, objs, "Deployment")
	if !sameMap(strMap(pdb, "spec", "selector", "matchLabels"), strMap(d, "spec", "selector", "matchLabels")) {
		t.Error("PDB selector differs from the Deployment selector")
	}
	if fmt.Sprint(get(pdb, "spec", "maxUnavailable")) != "1" || get(pdb, "spec", "minAvailable") != nil {
		t.Errorf("PDB spec = %v, want maxUnavailable 1", get(pdb, "spec"))
	}
	pdb = one(t, render(t, "hpa"), "PodDisruptionBudget")
	if fmt.Sprint(get(pdb, "spec", "minAvailable")) != "1" || get(pdb, "spec", "maxUnavailable") != nil {
		t.Errorf("pdb.minAvailable: spec = %v", get(pdb, "spec"))
	}
	none(t, render(t, "default", "pdb.enabled=false"), "PodDisruptionBudget")
}

func TestServiceMonitor(t *testing.T) {
	none(t, render(t, "default"), "ServiceMonitor")
	objs := render(t, "servicemonitor")
	sm := one(t, objs, "ServiceMonitor")
	svc := one(t, objs, "Service")
	if !matches(strMap(sm, "spec", "selector", "matchLabels"), strMap(svc, "metadata", "labels")) {
		t.Error("ServiceMonitor selector does not select the Service")
	}
	ep := get(sm, "spec", "endpoints", 0)
	if str(ep, "port") != str(svc, "spec", "ports", 0, "name") || str(ep, "path") != "/metrics" {
		t.Errorf("endpoint = %v, want the Service's port and /metrics", ep)
	}
	if str(ep, "interval") != "15s" || str(ep, "scrapeTimeout") != "10s" {
		t.Errorf("endpoint timing = %v", ep)
	}
	if strMap(sm, "metadata", "labels")["release"] != "kube-prometheus-stack" {
		t.Error("serviceMonitor.labels not applied")
	}
}

func TestTrainingJob(t *testing.T) {
	none(t, render(t, "default"), "Job")
	objs := render(t, "training-job")
	job := one(t, objs, "Job")
	d := one(t, objs, "Deployment")
	if job.Name() != "cner-train-2024-06-01" {
		t.Errorf("Job name = %q", job.Name())
	}
	spec := podSpec(job)
	if str(spec, "restartPolicy") != "Never" {
		t.Errorf("restartPolicy = %q", str(spec, "restartPolicy"))
	}
	var steps []string
	for _, c := range list(spec, "initContainers") {
		steps = append(steps, str(c, "name"))
		if cmd := list(c, "command"); len(cmd) != 1 || cmd[0] != "cner-train" {
			t.Errorf("step %s command = %v", str(c, "name"), cmd)
		}
		if get(c, "resources", "limits", "nvidia.com/gpu") == nil {
			t.Errorf("training.gpu: step %s has no GPU limit", str(c, "name"))
		}
	}
	if strings.Join(steps, ",") != "train,export" {
		t.Errorf("steps = %v, want train,export", steps)
	}
	pub := container(t, spec, "publish")
	args := list(pub, "args")
	if strings.Join(toStrings(args), " ") != "publish /workspace/bundle --config /workspace/publish.json" {
		t.Errorf("publish args = %v", args)
	}
	if get(pub, "resources", "limits", "nvidia.com/gpu") != nil {
		t.Error("the publish step needs no GPU")
	}
	if got := envValue(t, pub, "KAFKA_MODEL_TOPIC"); got != "ner.models.versions" {
		t.Errorf("KAFKA_MODEL_TOPIC = %q", got)
	}
	if str(env(pub)["KAFKA_SASL_PASSWORD"], "valueFrom", "secretKeyRef", "name") != "kafka-user" {
		t.Error("publish does not get the SASL password from the Secret")
	}
	for _, v := range list(spec, "volumes") {
		if str(v, "name") == "workspace" && str(v, "persistentVolumeClaim", "claimName") != "cner-training-data" {
			t.Errorf("training.workspace.existingClaim not used: %v", v)
		}
	}
	for _, c := range containers(spec) {
		mounted := false
		for _, m := range list(c, "volumeMounts") {
			mounted = mounted || (str(m, "name") == "workspace" && str(m, "mountPath") == "/workspace")
		}
		if !mounted {
			t.Errorf("container %s does not mount the shared /workspace", str(c, "name"))
		}
	}
	if strMap(spec, "nodeSelector")["nvidia.com/gpu.present"] != "true" {
		t.Error("training.gpu: no GPU node selector")
	}
	// The training pods are not processor pods.
	sel := strMap(d, "spec", "selector", "matchLabels")
	if matches(sel, strMap(job, "spec", "template", "metadata", "labels")) {
		t.Error("the Deployment/Service/PDB selector also selects the training pods")
	}
	if msg := renderFails(t, "training-job", "training.runId="); !strings.Contains(msg, "training.runId") {
		t.Errorf("training without runId: got %q", msg)
	}
}

// NOTES.txt tells users to select pods with the chart's selector labels: they must
// select exactly the processor pods (the bug seen in prometheus-community charts).
func TestNotesSelectorsMatch(t *testing.T) {
	selRe := regexp.MustCompile(`kubectl get pods [^\n]*-l "([^"]+)"`)
	for _, name := range scenarios(t) {
		t.Run(name, func(t *testing.T) {
			notes := renderNotes(t, name)
			m := selRe.FindStringSubmatch(notes)
			if m == nil {
				t.Fatalf("NOTES.txt has no `kubectl get pods -l` selector:\n%s", notes)
			}
			selector := map[string]string{}
			for _, kv := range strings.Split(m[1], ",") {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					t.Fatalf("selector %q is not key=value,...", m[1])
				}
				selector[k] = v
			}
			objs := render(t, name)
			d := one(t, objs, "Deployment")
			if got := strMap(d, "spec", "selector", "matchLabels"); !sameMap(selector, got) {
				t.Errorf("NOTES selector %v != Deployment selector %v", selector, got)
			}
			if !matches(selector, strMap(d, "spec", "template", "metadata", "labels")) {
				t.Error("NOTES selector does not select the Deployment's pods")
			}
			if got := strMap(one(t, objs, "Service"), "spec", "selector"); !sameMap(selector, got) {
				t.Errorf("NOTES selector %v != Service selector %v", selector, got)
			}
			for _, o := range objs {
				if o.Kind() == "Job" && matches(selector, strMap(o, "spec", "template", "metadata", "labels")) {
					t.Error("NOTES selector also selects the training pods")
				}
			}
			svc := one(t, objs, "Service").Name()
			if !strings.Contains(notes, "svc/"+svc+" ") {
				t.Errorf("NOTES port-forward does not name the Service %s", svc)
			}
		})
	}
}

// renderNotes renders templates/NOTES.txt the way `helm install` would, with the
// same values and engine: `helm template` skips NOTES.txt and `helm install
// --dry-run` needs a cluster, so a copy of the chart renders it through tpl.
func renderNotes(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	chart := filepath.Join(dir, "cner")
	if out, err := exec.Command("cp", "-R", chartDir(), chart).CombinedOutput(); err != nil {
		t.Fatalf("copy chart: %v %s", err, out)
	}
	notes, err := os.ReadFile(filepath.Join(chart, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(chart, "notes-under-test.txt"), notes, 0o644); err != nil {
		t.Fatal(err)
	}
	wrapper := `notes: {{ tpl (.Files.Get "notes-under-test.txt") . | quote }}` + "\n"
	if err := os.WriteFile(filepath.Join(chart, "templates", "zz-notes-under-test.yaml"), []byte(wrapper), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(helmBin(t), "template", "cner", chart, "--namespace", "ner", "--kube-version", kubeVersion,
		"-f", scenario(name), "--show-only", "templates/zz-notes-under-test.yaml")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("render NOTES.txt: %v\n%s", err, out)
	}
	docs, err := parseDocs(string(out))
	if err != nil || len(docs) != 1 {
		t.Fatalf("render NOTES.txt: %v\n%s", err, out)
	}
	return str(docs[0], "notes")
}
