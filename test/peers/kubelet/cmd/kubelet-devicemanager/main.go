// Command kubelet-devicemanager runs kubelet's own device manager
// (k8s.io/kubernetes/pkg/kubelet/cm/devicemanager) and the upstream PodResources v1
// server fed by it, so that tests can drive the real kubelet side of the device-plugin
// API against our plugin processes.
//
// Control protocol: one JSON object per line on stdin, one reply per line on stdout:
//
//	→ {"id":1,"op":"start","dir":"/tmp/x/device-plugins","podResourcesSocket":"/tmp/x/pod-resources/kubelet.sock"}
//	← {"id":1,"ok":true,"result":{...}}   or   {"id":1,"ok":false,"error":"..."}
//
// Ops: start, stop, capacity, devices, allocate, removePod, checkpoint, isExtendedResourceName. klog goes to
// stderr (run with -v=5 to see kubelet's GetPreferredAllocation decisions).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	_ "unsafe" // go:linkname

	cadvisorapi "github.com/google/cadvisor/info/v1"
	"google.golang.org/grpc"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2"
	podresourcesapi "k8s.io/kubelet/pkg/apis/podresources/v1"
	v1helper "k8s.io/kubernetes/pkg/apis/core/v1/helper"
	"k8s.io/kubernetes/pkg/kubelet/apis/podresources"
	"k8s.io/kubernetes/pkg/kubelet/cm/containermap"
	"k8s.io/kubernetes/pkg/kubelet/cm/devicemanager"
	"k8s.io/kubernetes/pkg/kubelet/cm/topologymanager"
)

// newManagerImpl is kubelet's constructor with an explicit registration socket path.
// The exported NewManagerImpl hard-codes /var/lib/kubelet/device-plugins/kubelet.sock;
// kubelet's own unit tests use this one, and so do we (the only seam that lets the real
// manager run in a temporary directory without root or a mount namespace).
//
//go:linkname newManagerImpl k8s.io/kubernetes/pkg/kubelet/cm/devicemanager.newManagerImpl
func newManagerImpl(socketPath string, topology []cadvisorapi.Node, topologyAffinityStore topologymanager.Store) (*devicemanager.ManagerImpl, error)

type request struct {
	ID                 int      `json:"id"`
	Op                 string   `json:"op"`
	Dir                string   `json:"dir,omitempty"`
	PodResourcesSocket string   `json:"podResourcesSocket,omitempty"`
	NumaNodes          []int    `json:"numaNodes,omitempty"`
	Pod                *podSpec `json:"pod,omitempty"`
	UID                string   `json:"uid,omitempty"`
	Names              []string `json:"names,omitempty"`
}

type podSpec struct {
	UID       string           `json:"uid"`
	Name      string           `json:"name"`
	Namespace string           `json:"namespace"`
	Container string           `json:"container"`
	Limits    map[string]int64 `json:"limits"`
}

type reply struct {
	ID     int    `json:"id"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
	Result any    `json:"result,omitempty"`
}

// node is what one kubelet holds: the manager, the admitted pods, the PodResources server.
type node struct {
	mu      sync.Mutex
	dir     string
	manager *devicemanager.ManagerImpl
	pods    []*v1.Pod
	grpc    *grpc.Server
}

func (n *node) activePods() []*v1.Pod {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*v1.Pod(nil), n.pods...)
}

type readySources struct{}

func (readySources) AddSource(string) {}
func (readySources) AllReady() bool   { return true }

func (n *node) start(req request) (any, error) {
	if n.manager != nil {
		return nil, fmt.Errorf("already started")
	}
	if req.Dir == "" {
		return nil, fmt.Errorf("dir is required")
	}
	var topology []cadvisorapi.Node
	for _, id := range req.NumaNodes {
		topology = append(topology, cadvisorapi.Node{Id: id})
	}
	m, err := newManagerImpl(filepath.Join(req.Dir, "kubelet.sock"), topology, topologymanager.NewFakeManager())
	if err != nil {
		return nil, err
	}
	// kubelet passes the containers the runtime reports; a fresh harness has none.
	if err := m.Start(n.activePods, readySources{}, containermap.NewContainerMap(), sets.New[string]()); err != nil {
		return nil, err
	}
	n.manager, n.dir = m, req.Dir
	if req.PodResourcesSocket != "" {
		if err := os.MkdirAll(filepath.Dir(req.PodResourcesSocket), 0o750); err != nil {
			return nil, err
		}
		_ = os.Remove(req.PodResourcesSocket)
		ln, err := net.Listen("unix", req.PodResourcesSocket)
		if err != nil {
			return nil, err
		}
		n.grpc = grpc.NewServer()
		providers := podresources.PodResourcesProviders{
			Pods:             podsProvider{n},
			Devices:          devicesProvider{n},
			Cpus:             noCPUs{},
			Memory:           noMemory{},
			DynamicResources: noDRA{},
		}
		podresourcesapi.RegisterPodResourcesListerServer(n.grpc, podresources.NewV1PodResourcesServer(context.Background(), providers))
		go func() { _ = n.grpc.Serve(ln) }()
	}
	return map[string]any{"socket": filepath.Join(req.Dir, "kubelet.sock")}, nil
}

func (n *node) stop() (any, error) {
	if n.grpc != nil {
		n.grpc.Stop()
		n.grpc = nil
	}
	if n.manager != nil {
		err := n.manager.Stop()
		n.manager = nil
		return nil, err
	}
	return nil, nil
}

func quantities(list v1.ResourceList) map[string]int64 {
	out := map[string]int64{}
	for name, q := range list {
		out[string(name)] = q.Value()
	}
	return out
}

func (n *node) capacity() (any, error) {
	if n.manager == nil {
		return nil, fmt.Errorf("not started")
	}
	capacity, allocatable, inactive := n.manager.GetCapacity()
	sort.Strings(inactive)
	return map[string]any{"capacity": quantities(capacity), "allocatable": quantities(allocatable), "inactive": inactive}, nil
}

type deviceView struct {
	Health string  `json:"health"`
	Numa   []int64 `json:"numa,omitempty"`
}

func (n *node) devices() (any, error) {
	if n.manager == nil {
		return nil, fmt.Errorf("not started")
	}
	out := map[string]map[string]deviceView{}
	for res, devs := range n.manager.GetAllocatableDevices() {
		out[res] = map[string]deviceView{}
		for id, d := range devs {
			v := deviceView{Health: d.Health}
			for _, numa := range d.GetTopology().GetNodes() {
				v.Numa = append(v.Numa, numa.GetID())
			}
			out[res][id] = v
		}
	}
	return out, nil
}

// allocate admits a pod with one container the way kubelet's admission handler does:
// the pod becomes active, then devicemanager.Allocate, then the runtime asks for the
// container's options (env, devices, mounts, annotations) built from the plugin's response.
func (n *node) allocate(spec *podSpec) (any, error) {
	if n.manager == nil {
		return nil, fmt.Errorf("not started")
	}
	if spec == nil || spec.UID == "" || spec.Container == "" {
		return nil, fmt.Errorf("pod.uid and pod.container are required")
	}
	limits := v1.ResourceList{}
	for name, count := range spec.Limits {
		limits[v1.ResourceName(name)] = *resource.NewQuantity(count, resource.DecimalSI)
	}
	pod := &v1.Pod{}
	pod.UID = types.UID(spec.UID)
	pod.Name, pod.Namespace = spec.Name, spec.Namespace
	pod.Spec.Containers = []v1.Container{{Name: spec.Container, Resources: v1.ResourceRequirements{Limits: limits, Requests: limits}}}
	n.mu.Lock()
	n.pods = append(n.pods, pod)
	n.mu.Unlock()
	container := &pod.Spec.Containers[0]
	if err := n.manager.Allocate(pod, container); err != nil {
		n.removePod(spec.UID)
		return nil, err
	}
	opts, err := n.manager.GetDeviceRunContainerOptions(pod, container)
	if err != nil {
		return nil, err
	}
	envs := map[string]string{}
	for _, e := range opts.Envs {
		envs[e.Name] = e.Value
	}
	var devs []map[string]string
	for _, d := range opts.Devices {
		devs = append(devs, map[string]string{"pathOnHost": d.PathOnHost, "pathInContainer": d.PathInContainer, "permissions": d.Permissions})
	}
	var mounts []map[string]any
	for _, m := range opts.Mounts {
		mounts = append(mounts, map[string]any{"hostPath": m.HostPath, "containerPath": m.ContainerPath, "readOnly": m.ReadOnly})
	}
	annotations := map[string]string{}
	for _, a := range opts.Annotations {
		annotations[a.Name] = a.Value
	}
	allocated := map[string][]string{}
	for res, devs := range n.manager.GetDevices(spec.UID, spec.Container) {
		for id := range devs {
			allocated[res] = append(allocated[res], id)
		}
		sort.Strings(allocated[res])
	}
	return map[string]any{"envs": envs, "devices": devs, "mounts": mounts, "annotations": annotations, "allocated": allocated}, nil
}

func (n *node) removePod(uid string) (any, error) {
	n.mu.Lock()
	kept := n.pods[:0]
	for _, p := range n.pods {
		if string(p.UID) != uid {
			kept = append(kept, p)
		}
	}
	n.pods = kept
	n.mu.Unlock()
	if n.manager != nil {
		n.manager.UpdateAllocatedDevices()
	}
	return nil, nil
}

// checkpoint returns kubelet's checkpoint file as written (JSON with a checksum).
func (n *node) checkpoint() (any, error) {
	raw, err := os.ReadFile(filepath.Join(n.dir, "kubelet_internal_checkpoint"))
	if err != nil {
		return nil, err
	}
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	return doc, nil
}

// --- PodResources providers, as kubelet's container manager wires them ---

type podsProvider struct{ n *node }

func (p podsProvider) GetActivePods() []*v1.Pod { return p.n.activePods() }
func (p podsProvider) GetPods() []*v1.Pod       { return p.n.activePods() }
func (p podsProvider) GetPodByName(namespace, name string) (*v1.Pod, bool) {
	for _, pod := range p.n.activePods() {
		if pod.Namespace == namespace && pod.Name == name {
			return pod, true
		}
	}
	return nil, false
}

type devicesProvider struct{ n *node }

func (d devicesProvider) UpdateAllocatedDevices() { d.n.manager.UpdateAllocatedDevices() }
func (d devicesProvider) GetDevices(podUID, containerName string) []*podresourcesapi.ContainerDevices {
	return containerDevices(d.n.manager.GetDevices(podUID, containerName))
}
func (d devicesProvider) GetAllocatableDevices() []*podresourcesapi.ContainerDevices {
	return containerDevices(d.n.manager.GetAllocatableDevices())
}

// containerDevices converts the manager's view to the PodResources message the way
// kubelet's container manager does: one entry per device and NUMA node, or one entry
// without topology when the plugin reported none.
func containerDevices(devs devicemanager.ResourceDeviceInstances) []*podresourcesapi.ContainerDevices {
	var out []*podresourcesapi.ContainerDevices
	for res, instances := range devs {
		for id, dev := range instances {
			nodes := dev.GetTopology().GetNodes()
			if len(nodes) == 0 {
				out = append(out, &podresourcesapi.ContainerDevices{ResourceName: res, DeviceIds: []string{id}})
				continue
			}
			for _, numa := range nodes {
				out = append(out, &podresourcesapi.ContainerDevices{
					ResourceName: res,
					DeviceIds:    []string{id},
					Topology:     &podresourcesapi.TopologyInfo{Nodes: []*podresourcesapi.NUMANode{{ID: numa.GetID()}}},
				})
			}
		}
	}
	return out
}

type noCPUs struct{}

func (noCPUs) GetCPUs(string, string) []int64 { return nil }
func (noCPUs) GetAllocatableCPUs() []int64    { return nil }

type noMemory struct{}

func (noMemory) GetMemory(string, string) []*podresourcesapi.ContainerMemory { return nil }
func (noMemory) GetAllocatableMemory() []*podresourcesapi.ContainerMemory    { return nil }

type noDRA struct{}

func (noDRA) GetDynamicResources(*v1.Pod, *v1.Container) []*podresourcesapi.DynamicResource {
	return nil
}

func main() {
	klog.InitFlags(nil)
	flag.Parse()
	n := &node{}
	out := json.NewEncoder(os.Stdout)
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			_ = out.Encode(reply{OK: false, Error: "bad request: " + err.Error()})
			continue
		}
		var result any
		var err error
		switch req.Op {
		case "start":
			result, err = n.start(req)
		case "stop":
			result, err = n.stop()
		case "capacity":
			result, err = n.capacity()
		case "devices":
			result, err = n.devices()
		case "allocate":
			result, err = n.allocate(req.Pod)
		case "removePod":
			result, err = n.removePod(req.UID)
		case "checkpoint":
			result, err = n.checkpoint()
		case "isExtendedResourceName":
			// The check kubelet's registration server runs on every Register (plugin/v1beta1/server.go).
			verdicts := make([]bool, len(req.Names))
			for i, name := range req.Names {
				verdicts[i] = v1helper.IsExtendedResourceName(v1.ResourceName(name))
			}
			result = verdicts
		default:
			err = fmt.Errorf("unknown op %q", req.Op)
		}
		if err != nil {
			_ = out.Encode(reply{ID: req.ID, OK: false, Error: err.Error()})
		} else {
			_ = out.Encode(reply{ID: req.ID, OK: true, Result: result})
		}
	}
	_, _ = n.stop()
}
