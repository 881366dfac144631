// Command kubelet-dra runs kubelet's own DRA manager (k8s.io/kubernetes/pkg/kubelet/cm/dra) behind
// kubelet's own plugin manager (pkg/kubelet/pluginmanager, which watches the plugin-registration
// directory and calls GetInfo / NotifyRegistrationStatus), so that tests can drive a DRA kubelet
// plugin through registration, NodePrepareResources and NodeUnprepareResources exactly as kubelet
// 1.34 does. The manager reads Pods and ResourceClaims from a real kube-apiserver (--kubeconfig).
//
// Control protocol: one JSON object per line on stdin, one reply per line on stdout:
//
//	→ {"id":1,"op":"start","registryDir":"/tmp/x/plugins_registry","stateDir":"/tmp/x/state","kubeconfig":"/tmp/k","nodeName":"node-a"}
//	← {"id":1,"ok":true,"result":{...}}   or   {"id":1,"ok":false,"error":"..."}
//
// Ops:
//   - start: the DRA manager (state in stateDir, as kubelet's dra_manager_state checkpoint) and the
//     plugin manager on registryDir.
//   - registered {driver}: whether kubelet holds a usable plugin for the driver (DRAPluginManager.GetPlugin).
//   - prepare {namespace, name}: GETs the Pod and calls Manager.PrepareResources(pod), then returns,
//     per container, the CDI device IDs kubelet would hand to the runtime (Manager.GetResources).
//   - unprepare {namespace, name}: Manager.UnprepareResources(pod) for the pod last prepared under that name
//     (or, after a restart, as the API server has it: the claim comes from the checkpoint in stateDir).
//   - stop.
//
// klog goes to stderr (run with -v=4 to see "Registered DRA plugin … chosenService").
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sync"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	pluginwatcherapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
	"k8s.io/kubernetes/pkg/kubelet/cm/dra"
	draplugin "k8s.io/kubernetes/pkg/kubelet/cm/dra/plugin"
	"k8s.io/kubernetes/pkg/kubelet/pluginmanager"
)

type request struct {
	ID          int    `json:"id"`
	Op          string `json:"op"`
	RegistryDir string `json:"registryDir,omitempty"`
	StateDir    string `json:"stateDir,omitempty"`
	Kubeconfig  string `json:"kubeconfig,omitempty"`
	NodeName    string `json:"nodeName,omitempty"`
	Namespace   string `json:"namespace,omitempty"`
	Name        string `json:"name,omitempty"`
	Driver      string `json:"driver,omitempty"`
}

type reply struct {
	ID     int    `json:"id"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
	Result any    `json:"result,omitempty"`
}

type readySources struct{}

func (readySources) AddSource(string) {}
func (readySources) AllReady() bool   { return true }

// node is what one kubelet holds for DRA: the manager, the plugin manager, the pods it admitted.
type node struct {
	mu      sync.Mutex
	client  kubernetes.Interface
	manager *dra.Manager
	cancel  context.CancelFunc
	stopCh  chan struct{}
	pods    map[string]*v1.Pod // namespace/name → the pod as prepared
}

func (n *node) activePods() []*v1.Pod {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]*v1.Pod, 0, len(n.pods))
	for _, p := range n.pods {
		out = append(out, p)
	}
	return out
}

func (n *node) start(req request) (any, error) {
	if n.manager != nil {
		return nil, fmt.Errorf("already started")
	}
	if req.RegistryDir == "" || req.StateDir == "" || req.Kubeconfig == "" || req.NodeName == "" {
		return nil, fmt.Errorf("registryDir, stateDir, kubeconfig and nodeName are required")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", req.Kubeconfig)
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{req.RegistryDir, req.StateDir} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(klog.NewContext(context.Background(), klog.Background()))
	m, err := dra.NewManager(klog.Background(), client, req.StateDir)
	if err != nil {
		cancel()
		return nil, err
	}
	nodeName := req.NodeName
	getNode := func() (*v1.Node, error) {
		// kubelet answers from its node lister; the API is the same source.
		return client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	}
	if err := m.Start(ctx, n.activePods, getNode, readySources{}); err != nil {
		cancel()
		return nil, err
	}
	pm := pluginmanager.NewPluginManager(req.RegistryDir, record.NewFakeRecorder(100))
	// What kubelet.go does: the DRA manager's handler serves plugin type "DRAPlugin".
	pm.AddHandler(pluginwatcherapi.DRAPlugin, m.GetWatcherHandler())
	stopCh := make(chan struct{})
	go pm.Run(readySources{}, stopCh)
	n.client, n.manager, n.cancel, n.stopCh = client, m, cancel, stopCh
	n.pods = map[string]*v1.Pod{}
	return map[string]any{"registryDir": req.RegistryDir}, nil
}

func (n *node) registered(req request) (any, error) {
	if n.manager == nil {
		return nil, fmt.Errorf("not started")
	}
	pm, ok := n.manager.GetWatcherHandler().(*draplugin.DRAPluginManager)
	if !ok {
		return nil, fmt.Errorf("unexpected watcher handler %T", n.manager.GetWatcherHandler())
	}
	_, err := pm.GetPlugin(req.Driver)
	if err != nil {
		return map[string]any{"registered": false, "reason": err.Error()}, nil
	}
	return map[string]any{"registered": true}, nil
}

func (n *node) prepare(req request) (any, error) {
	if n.manager == nil {
		return nil, fmt.Errorf("not started")
	}
	ctx := context.Background()
	pod, err := n.client.CoreV1().Pods(req.Namespace).Get(ctx, req.Name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.pods[req.Namespace+"/"+req.Name] = pod
	n.mu.Unlock()
	if err := n.manager.PrepareResources(ctx, pod); err != nil {
		return nil, err
	}
	cdi := map[string][]string{}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		info, err := n.manager.GetResources(pod, c)
		if err != nil {
			return nil, err
		}
		ids := []string{}
		for _, d := range info.CDIDevices {
			ids = append(ids, d.Name)
		}
		cdi[c.Name] = ids
	}
	return map[string]any{"cdiDevices": cdi}, nil
}

func (n *node) unprepare(req request) (any, error) {
	if n.manager == nil {
		return nil, fmt.Errorf("not started")
	}
	key := req.Namespace + "/" + req.Name
	n.mu.Lock()
	pod := n.pods[key]
	n.mu.Unlock()
	if pod == nil {
		// A restarted kubelet knows the pod from the API server (and the claim from its checkpoint).
		var err error
		pod, err = n.client.CoreV1().Pods(req.Namespace).Get(context.Background(), req.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
	}
	if err := n.manager.UnprepareResources(context.Background(), pod); err != nil {
		return nil, err
	}
	n.mu.Lock()
	delete(n.pods, key)
	n.mu.Unlock()
	return map[string]any{}, nil
}

func (n *node) stop() (any, error) {
	if n.manager == nil {
		return map[string]any{}, nil
	}
	close(n.stopCh)
	n.cancel()
	n.manager = nil
	return map[string]any{}, nil
}

func main() {
	klog.InitFlags(nil)
	flag.Parse()
	n := &node{}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			_ = out.Encode(reply{ID: -1, Error: err.Error()})
			continue
		}
		var res any
		var err error
		switch req.Op {
		case "start":
			res, err = n.start(req)
		case "registered":
			res, err = n.registered(req)
		case "prepare":
			res, err = n.prepare(req)
		case "unprepare":
			res, err = n.unprepare(req)
		case "stop":
			res, err = n.stop()
		default:
			err = fmt.Errorf("unknown op %q", req.Op)
		}
		if err != nil {
			_ = out.Encode(reply{ID: req.ID, Error: err.Error()})
		} else {
			_ = out.Encode(reply{ID: req.ID, OK: true, Result: res})
		}
	}
	_, _ = n.stop()
}
