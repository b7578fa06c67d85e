package node

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
)

// The Kubernetes manifests of examples/kubernetes run this package's
// command: they must parse, and configure a node that FromArgs accepts,
// with probes, ports, Services and timeouts that fit it.

type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec struct {
		// Service
		ClusterIP                string        `yaml:"clusterIP"`
		PublishNotReadyAddresses bool          `yaml:"publishNotReadyAddresses"`
		Ports                    []servicePort `yaml:"ports"`
		// Service (a map of labels) or workload and PDB ({matchLabels: ...})
		Selector map[string]any `yaml:"selector"`
		// StatefulSet, Deployment
		ServiceName     string `yaml:"serviceName"`
		Replicas        int    `yaml:"replicas"`
		MinReadySeconds int    `yaml:"minReadySeconds"`
		Template        struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				TerminationGracePeriodSeconds int         `yaml:"terminationGracePeriodSeconds"`
				Containers                    []container `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type servicePort struct {
	Name       string `yaml:"name"`
	Protocol   string `yaml:"protocol"`
	Port       int    `yaml:"port"`
	TargetPort any    `yaml:"targetPort"`
}

type container struct {
	Name  string `yaml:"name"`
	Image string `yaml:"image"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			FieldRef *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	EnvFrom []struct {
		SecretRef *struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
	} `yaml:"envFrom"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	Lifecycle      *struct {
		PreStop *struct {
			Sleep *struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
	PeriodSeconds    int `yaml:"periodSeconds"`
	FailureThreshold int `yaml:"failureThreshold"`
}

// loadManifests decodes every document of every examples/kubernetes/*.yaml.
func loadManifests(t *testing.T) map[string][]k8sObject {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	out := map[string][]k8sObject{}
	for _, f := range files {
		r, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(r)
		for {
			var o k8sObject
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				r.Close()
				t.Fatalf("%s: %v", f, err)
			}
			if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
				t.Fatalf("%s: a document without apiVersion, kind or name: %+v", f, o)
			}
			out[filepath.Base(f)] = append(out[filepath.Base(f)], o)
		}
		r.Close()
		if len(out[filepath.Base(f)]) == 0 {
			t.Fatalf("%s: no document", f)
		}
	}
	return out
}

// matchLabels returns a workload's or PDB's selector.
func matchLabels(o k8sObject) map[string]string {
	m, _ := o.Spec.Selector["matchLabels"].(map[string]any)
	out := map[string]string{}
	for k, v := range m {
		out[k] = fmt.Sprint(v)
	}
	return out
}

// selects reports whether every label of sel is in labels.
func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

func TestKubernetesManifests(t *testing.T) {
	files := loadManifests(t)
	services := map[string]k8sObject{}
	var workloads, pdbs []k8sObject
	for _, objs := range files {
		for _, o := range objs {
			switch o.Kind {
			case "Service":
				services[o.Metadata.Name] = o
			case "StatefulSet", "Deployment":
				workloads = append(workloads, o)
			case "PodDisruptionBudget":
				pdbs = append(pdbs, o)
			default:
				t.Errorf("unexpected kind %s", o.Kind)
			}
		}
	}
	if len(workloads) != 3 {
		t.Fatalf("%d workloads, want the StatefulSet with DNS, the static one and the Deployment", len(workloads))
	}
	const namespace = "prod"
	kinds := map[string]int{}
	for _, w := range workloads {
		name := w.Kind + " " + w.Metadata.Name
		labels := w.Spec.Template.Metadata.Labels
		if !selects(matchLabels(w), labels) {
			t.Errorf("%s: its selector does not select its pods", name)
		}
		var c *container
		for i := range w.Spec.Template.Spec.Containers {
			if w.Spec.Template.Spec.Containers[i].Name == "node" {
				c = &w.Spec.Template.Spec.Containers[i]
			}
		}
		if c == nil {
			t.Fatalf("%s: no container named node", name)
		}
		ports := map[string]int{}
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
		}
		if ports["http"] == 0 || ports["repl"] == 0 {
			t.Errorf("%s: container ports %v, want http and repl", name, ports)
		}
		for _, pc := range []struct {
			what string
			p    *probe
			path string
		}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}} {
			if pc.p == nil || pc.p.HTTPGet == nil || pc.p.HTTPGet.Path != pc.path || fmt.Sprint(pc.p.HTTPGet.Port) != "http" {
				t.Errorf("%s: %s probe %+v, want GET %s on port http", name, pc.what, pc.p, pc.path)
			}
		}
		if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef == nil || c.EnvFrom[0].SecretRef.Name != "tandem-keys" {
			t.Errorf("%s: the keys do not come from the Secret tandem-keys", name)
		}

		// The environment the pod gets, with the downward API's values and
		// $(VAR) expanded as the kubelet does.
		pod := w.Metadata.Name + "-1"
		fields := map[string]string{"metadata.name": pod, "metadata.namespace": namespace, "status.podIP": "10.244.1.7"}
		e := keys()
		for _, v := range c.Env {
			switch {
			case v.ValueFrom != nil && v.ValueFrom.FieldRef != nil:
				val, ok := fields[v.ValueFrom.FieldRef.FieldPath]
				if !ok {
					t.Fatalf("%s: %s from unknown field %s", name, v.Name, v.ValueFrom.FieldRef.FieldPath)
				}
				e[v.Name] = val
			case v.ValueFrom != nil:
				t.Fatalf("%s: %s: unexpected valueFrom", name, v.Name)
			default:
				e[v.Name] = envRef.ReplaceAllStringFunc(v.Value, func(ref string) string {
					val, ok := e[ref[2:len(ref)-1]]
					if !ok {
						t.Errorf("%s: %s refers to %s, not defined before it", name, v.Name, ref)
					}
					return val
				})
			}
		}
		cfg, err := FromArgs(nil, e.get, io.Discard)
		if err != nil {
			t.Fatalf("%s: FromArgs: %v", name, err)
		}
		for what, addr := range map[string]string{"http": cfg.HTTPAddr, "repl": cfg.ReplAddr} {
			_, port, err := net.SplitHostPort(addr)
			if err != nil || port != strconv.Itoa(ports[what]) {
				t.Errorf("%s: %s address %q, container port %d", name, what, addr, ports[what])
			}
		}

		// The stop fits in the grace period: preStop, then the delay and
		// the graceful stop, with room for the process to exit.
		preStop := 0
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
			preStop = c.Lifecycle.PreStop.Sleep.Seconds
		}
		if preStop == 0 && cfg.ShutdownDelay == 0 {
			t.Errorf("%s: neither a preStop sleep nor TANDEM_SHUTDOWN_DELAY: the balancer may still send requests to a stopping pod", name)
		}
		need := time.Duration(preStop)*time.Second + cfg.ShutdownDelay + cfg.ShutdownTimeout + 5*time.Second
		if grace := time.Duration(w.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second; grace < need {
			t.Errorf("%s: terminationGracePeriodSeconds %v, need at least %v", name, grace, need)
		}
		if w.Spec.MinReadySeconds > 0 && cfg.Discovery != nil && time.Duration(w.Spec.MinReadySeconds)*time.Second < cfg.DiscoveryInterval {
			t.Errorf("%s: minReadySeconds %d below the discovery interval %v", name, w.Spec.MinReadySeconds, cfg.DiscoveryInterval)
		}

		// The headless Service that names the pods and lists them.
		headless := func(svcName string) {
			svc, ok := services[svcName]
			if !ok {
				t.Errorf("%s: no Service %q", name, svcName)
				return
			}
			if svc.Spec.ClusterIP != "None" || !svc.Spec.PublishNotReadyAddresses {
				t.Errorf("%s: Service %s must be headless with publishNotReadyAddresses: true", name, svcName)
			}
			sel := map[string]string{}
			for k, v := range svc.Spec.Selector {
				sel[k] = fmt.Sprint(v)
			}
			if !selects(sel, labels) {
				t.Errorf("%s: Service %s does not select its pods", name, svcName)
			}
			found := false
			for _, p := range svc.Spec.Ports {
				if p.Name == "repl" && p.Protocol == "TCP" && fmt.Sprint(p.TargetPort) == "repl" && p.Port == ports["repl"] {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: Service %s has no TCP port named repl to the container's repl port", name, svcName)
			}
		}

		switch {
		case w.Kind == "StatefulSet" && cfg.Discovery != nil:
			kinds["statefulset-dns"]++
			headless(w.Spec.ServiceName)
			want := "dns srv _repl._tcp." + w.Spec.ServiceName + "." + namespace + ".svc.cluster.local."
			if s := cfg.Discovery.(fmt.Stringer).String(); s != want {
				t.Errorf("%s: discovery %q, want %q", name, s, want)
			}
			if cfg.ID != pod {
				t.Errorf("%s: ID %q, want the pod name %q", name, cfg.ID, pod)
			}
		case w.Kind == "StatefulSet":
			kinds["statefulset-static"]++
			headless(w.Spec.ServiceName)
			if len(cfg.Peers) != w.Spec.Replicas {
				t.Errorf("%s: %d peers for %d replicas", name, len(cfg.Peers), w.Spec.Replicas)
			}
			for i, p := range cfg.Peers {
				id := fmt.Sprintf("%s-%d", w.Metadata.Name, i)
				addr := fmt.Sprintf("%s.%s.%s.svc.cluster.local:%d", id, w.Spec.ServiceName, namespace, ports["repl"])
				if p.ID != id || p.Addr != addr {
					t.Errorf("%s: peer %d is %s=%s, want %s=%s", name, i, p.ID, p.Addr, id, addr)
				}
			}
			if cfg.ID != pod {
				t.Errorf("%s: ID %q, want the pod name %q", name, cfg.ID, pod)
			}
		case w.Kind == "Deployment" && cfg.Discovery != nil:
			kinds["deployment-dns"]++
			s := cfg.Discovery.(fmt.Stringer).String()
			svcName, _, _ := strings.Cut(strings.TrimPrefix(s, "dns ip4 "), ".")
			headless(svcName)
			want := fmt.Sprintf("dns ip4 %s.%s.svc.cluster.local. port %d", svcName, namespace, ports["repl"])
			if s != want {
				t.Errorf("%s: discovery %q, want %q", name, s, want)
			}
			if cfg.ID != "10.244.1.7" {
				t.Errorf("%s: ID %q, want the pod IP", name, cfg.ID)
			}
		default:
			t.Errorf("%s: neither DNS discovery nor a StatefulSet", name)
		}
	}
	if kinds["statefulset-dns"] != 1 || kinds["statefulset-static"] != 1 || kinds["deployment-dns"] != 1 {
		t.Errorf("workloads %v", kinds)
	}

	// Every Service and the PDB select the pods of a workload.
	for _, svc := range services {
		sel := map[string]string{}
		for k, v := range svc.Spec.Selector {
			sel[k] = fmt.Sprint(v)
		}
		ok := false
		for _, w := range workloads {
			ok = ok || selects(sel, w.Spec.Template.Metadata.Labels)
		}
		if !ok {
			t.Errorf("Service %s selects no workload's pods", svc.Metadata.Name)
		}
	}
	if len(pdbs) != 1 || !selects(matchLabels(pdbs[0]), services["tandem"].Metadata.Labels) {
		t.Errorf("want one PodDisruptionBudget selecting the StatefulSet's pods, got %+v", pdbs)
	}
}
