package config

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Feature gate names etcd v3.7.3 knows (server/features). --feature-gates
// accepts exactly these, plus AllAlpha and AllBeta.
const (
	FeatureStopGRPCServiceOnDefrag      = "StopGRPCServiceOnDefrag"
	FeatureTxnModeWriteWithSharedBuffer = "TxnModeWriteWithSharedBuffer"
	FeatureInitialCorruptCheck          = "InitialCorruptCheck"
	FeatureCompactHashCheck             = "CompactHashCheck"
	FeatureLeaseCheckpoint              = "LeaseCheckpoint"
	FeatureLeaseCheckpointPersist       = "LeaseCheckpointPersist"
	FeatureSetMemberLocalAddr           = "SetMemberLocalAddr"
	FeatureFastLeaseKeepAlive           = "FastLeaseKeepAlive"
	FeaturePriorityRequest              = "PriorityRequest"

	featureAllAlpha = "AllAlpha"
	featureAllBeta  = "AllBeta"
)

type featureStage int

const (
	featureStageAlpha featureStage = iota
	featureStageBeta
)

type featureSpec struct {
	def   bool
	stage featureStage
}

var knownFeatures = map[string]featureSpec{
	FeatureStopGRPCServiceOnDefrag:      {false, featureStageAlpha},
	FeatureTxnModeWriteWithSharedBuffer: {true, featureStageBeta},
	// On by default in strata (etcd: off): docs/compat.md.
	FeatureInitialCorruptCheck: {true, featureStageAlpha},
	// On by default in strata (etcd: off): docs/compat.md.
	FeatureCompactHashCheck:       {true, featureStageAlpha},
	FeatureLeaseCheckpoint:        {false, featureStageAlpha},
	FeatureLeaseCheckpointPersist: {false, featureStageAlpha},
	FeatureSetMemberLocalAddr:     {false, featureStageAlpha},
	FeatureFastLeaseKeepAlive:     {true, featureStageBeta},
	FeaturePriorityRequest:        {false, featureStageAlpha},
}

// featureGatesValue is --feature-gates: "Name=bool,..." pairs. Settings
// accumulate over repeats; within one value an explicit gate wins over
// AllAlpha/AllBeta, as in etcd.
type featureGatesValue struct {
	// explicit holds the gates named so far, AllAlpha/AllBeta included.
	explicit map[string]bool
}

func (v *featureGatesValue) Set(s string) error {
	m := make(map[string]bool)
	for _, kv := range strings.Split(s, ",") {
		if kv == "" {
			continue
		}
		k, val, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok {
			return fmt.Errorf("missing bool value for %s", k)
		}
		val = strings.TrimSpace(val)
		b, err := strconv.ParseBool(val)
		if err != nil {
			return fmt.Errorf("invalid value of %s=%s, err: %w", k, val, err)
		}
		if _, known := knownFeatures[k]; !known && k != featureAllAlpha && k != featureAllBeta {
			return fmt.Errorf("unrecognized feature gate: %s", k)
		}
		m[k] = b
	}
	if v.explicit == nil {
		v.explicit = make(map[string]bool)
	}
	maps.Copy(v.explicit, m)
	return nil
}

func (v *featureGatesValue) String() string {
	if v == nil {
		return ""
	}
	keys := slices.Sorted(maps.Keys(v.explicit))
	pairs := make([]string, len(keys))
	for i, k := range keys {
		pairs[i] = fmt.Sprintf("%s=%t", k, v.explicit[k])
	}
	return strings.Join(pairs, ",")
}

// effective returns the state of every known gate: the explicit setting if
// any, else AllAlpha/AllBeta for its stage if set, else its default.
func (v *featureGatesValue) effective() map[string]bool {
	out := make(map[string]bool, len(knownFeatures))
	for name, spec := range knownFeatures {
		enabled := spec.def
		if all, ok := v.stageToggle(spec.stage); ok {
			enabled = all
		}
		if b, ok := v.explicit[name]; ok {
			enabled = b
		}
		out[name] = enabled
	}
	return out
}

func (v *featureGatesValue) stageToggle(st featureStage) (bool, bool) {
	key := featureAllAlpha
	if st == featureStageBeta {
		key = featureAllBeta
	}
	b, ok := v.explicit[key]
	return b, ok
}
