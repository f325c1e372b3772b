// This file is copied into etcd's tests module (robustness/model) by
// tests/etcdrobustness/run.sh; it is not part of strata's build.

package model

// LogReplay steps the persisted requests through the model in log order
// and returns each one's response and the final state.
func LogReplay(reqs []EtcdRequest) ([]MaybeEtcdResponse, EtcdState) {
	state := freshEtcdState(keysFromRequests(reqs))
	out := make([]MaybeEtcdResponse, len(reqs))
	for i, r := range reqs {
		state, out[i] = state.Step(r)
	}
	return out, state
}
