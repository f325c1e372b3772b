package workload

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"
)

// PodJSON returns a pod object shaped like what kube-apiserver stores
// (as JSON; it stores protobuf by default, JSON for CRDs), about 2.5 KiB.
func PodJSON(rng *rand.Rand) []byte {
	name := PodName(rng)
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC).Add(time.Duration(rng.IntN(86400)) * time.Second).Format(time.RFC3339)
	ip := fmt.Sprintf("10.%d.%d.%d", rng.IntN(256), rng.IntN(256), rng.IntN(256))
	pod := map[string]any{
		"apiVersion": "v1",
		"kind":       "Pod",
		"metadata": map[string]any{
			"name": name, "namespace": "default", "uid": UID(rng), "resourceVersion": fmt.Sprint(rng.IntN(1 << 30)),
			"creationTimestamp": now,
			"labels":            map[string]string{"app": "web", "pod-template-hash": fmt.Sprintf("%x", rng.Uint32()), "tier": "frontend"},
			"annotations":       map[string]string{"kubernetes.io/config.seen": now, "prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
			"ownerReferences": []map[string]any{{
				"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-" + fmt.Sprintf("%x", rng.Uint32()),
				"uid": UID(rng), "controller": true, "blockOwnerDeletion": true,
			}},
		},
		"spec": map[string]any{
			"containers": []map[string]any{{
				"name": "web", "image": "registry.example.com/web:1.27.3",
				"ports":     []map[string]any{{"containerPort": 8080, "protocol": "TCP"}},
				"resources": map[string]any{"limits": map[string]string{"cpu": "500m", "memory": "256Mi"}, "requests": map[string]string{"cpu": "100m", "memory": "128Mi"}},
				"env":       []map[string]string{{"name": "POD_NAME", "value": name}, {"name": "LOG_LEVEL", "value": "info"}},
				"volumeMounts": []map[string]any{{
					"name": "kube-api-access-" + name[len(name)-5:], "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
				}},
				"terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent",
			}},
			"restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
			"serviceAccountName": "default", "nodeName": fmt.Sprintf("node-%03d", rng.IntN(500)), "schedulerName": "default-scheduler",
			"tolerations": []map[string]any{
				{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
				{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
			},
		},
		"status": map[string]any{
			"phase": "Running", "hostIP": ip, "podIP": ip, "startTime": now, "qosClass": "Burstable",
			"conditions": []map[string]any{
				{"type": "Initialized", "status": "True", "lastTransitionTime": now},
				{"type": "Ready", "status": "True", "lastTransitionTime": now},
				{"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
				{"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
			},
			"containerStatuses": []map[string]any{{
				"name": "web", "ready": true, "restartCount": rng.IntN(3), "image": "registry.example.com/web:1.27.3",
				"imageID":     "registry.example.com/web@sha256:" + fmt.Sprintf("%016x%016x%016x%016x", rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64()),
				"containerID": "containerd://" + fmt.Sprintf("%016x%016x%016x%016x", rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64()),
				"state":       map[string]any{"running": map[string]string{"startedAt": now}},
			}},
		},
	}
	b, err := json.Marshal(pod)
	if err != nil {
		panic(err)
	}
	return b
}

// PodName returns a pod name like a ReplicaSet's: web-<10>-<5>.
func PodName(rng *rand.Rand) string {
	const alnum = "bcdfghjklmnpqrstvwxz2456789"
	b := []byte("web-")
	for range 10 {
		b = append(b, alnum[rng.IntN(len(alnum))])
	}
	b = append(b, '-')
	for range 5 {
		b = append(b, alnum[rng.IntN(len(alnum))])
	}
	return string(b)
}

// UID returns a random Kubernetes-style UID.
func UID(rng *rand.Rand) string {
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", rng.Uint32(), rng.Uint32()&0xffff, rng.Uint32()&0xffff, rng.Uint32()&0xffff, rng.Uint64()&0xffffffffffff)
}
