package applier_test

import (
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/applier/applytest"
	"github.com/stratakv/strata/applier/kvmodel"
)

// envInt reads an integer knob from the environment.
func envInt(t testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

// TestModelCheck runs a long random request sequence against the applier
// on an in-memory Pebble (real Pebble, simulated file system) that crashes
// and restarts along the way, and compares every answer with kvmodel.
//
// STRATA_MODEL_OPS sets the number of requests (default 100000, 10000
// with -short); STRATA_MODEL_SEED the seed.
func TestModelCheck(t *testing.T) {
	ops := 100_000
	if testing.Short() {
		ops = 10_000
	}
	ops = envInt(t, "STRATA_MODEL_OPS", ops)
	seed := envInt(t, "STRATA_MODEL_SEED", 1)
	applytest.RunModelCheck(t, applytest.ModelCheckConfig{
		Seed:        int64(seed),
		Ops:         ops,
		FS:          vfs.NewCrashableMem(),
		Open:        func(fs vfs.FS) (applier.Engine, error) { return applier.OpenTestPebble(fs, "db") },
		ReopenEvery: 5000,
		CrashEvery:  5000,
		Keys:        wideKeys,
	})
}

// wideKeys adds keys that share a prefix to the default key space, so that
// ranges return more than a dozen keys and sorts have ties (sort.Sort
// sorts up to 12 elements by a stable insertion sort).
var wideKeys = func() []string {
	keys := append([]string(nil), kvmodel.DefaultKeys...)
	for i := range 24 {
		keys = append(keys, fmt.Sprintf("k%02d", i))
	}
	return keys
}()

// TestModelCheckDisk is a shorter run on Pebble on disk, with restarts.
func TestModelCheckDisk(t *testing.T) {
	ops := envInt(t, "STRATA_MODEL_DISK_OPS", 5_000)
	dir := t.TempDir()
	applytest.RunModelCheck(t, applytest.ModelCheckConfig{
		Seed:        int64(envInt(t, "STRATA_MODEL_SEED", 1)) + 1000,
		Ops:         ops,
		FS:          vfs.Default,
		Open:        func(fs vfs.FS) (applier.Engine, error) { return applier.OpenTestPebble(fs, dir) },
		ReopenEvery: 1000,
	})
}

// TestModelCheckSeeds runs many short sequences with different seeds and
// the default txn budget.
func TestModelCheckSeeds(t *testing.T) {
	n := envInt(t, "STRATA_MODEL_SEEDS", 8)
	for seed := 1; seed <= n; seed++ {
		t.Run(strconv.Itoa(seed), func(t *testing.T) {
			t.Parallel()
			applytest.RunModelCheck(t, applytest.ModelCheckConfig{
				Seed:      int64(seed) * 7919,
				Ops:       2_000,
				FS:        vfs.NewCrashableMem(),
				Open:      func(fs vfs.FS) (applier.Engine, error) { return applier.OpenTestPebble(fs, "db") },
				MaxTxnOps: 128, CompactionChunk: 1, CrashEvery: 400,
			})
		})
	}
}
