package inspect

import "github.com/kadiag/kadiag/internal/pod"

// AddPods names the pod and container of every process of the report that
// runs in a Kubernetes pod (its cgroup, joined with the kubelet's log
// layout in logs, which may be nil). Processes outside any pod are left
// as they are. A process that exited since the scan keeps no pod.
func (r *Report) AddPods(logs *pod.Logs) {
	for i := range r.Processes {
		p := &r.Processes[i]
		if p.PID <= 0 {
			continue
		}
		c, err := pod.ReadCgroup(p.PID)
		if err != nil || c.PodUID == "" {
			continue
		}
		id := logs.Identify(c)
		p.Pod = &id
	}
}
