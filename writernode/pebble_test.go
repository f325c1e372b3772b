package writernode

import (
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/applier/applytest"
)

func TestPebbleEngineConformance(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts PebbleOptions
	}{
		{"wal", PebbleOptions{}},
		{"no wal", PebbleOptions{DisableWAL: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			applytest.RunEngineConformance(t, func(dir string) (applier.Engine, error) {
				return OpenPebble(dir, tc.opts)
			})
		})
	}
}

// TestPebbleEngineModelCheck runs the applier on PebbleEngine against the
// reference model, with crashes (in memory) and restarts (on disk).
func TestPebbleEngineModelCheck(t *testing.T) {
	ops := 5000
	if testing.Short() {
		ops = 1000
	}
	t.Run("mem", func(t *testing.T) {
		applytest.RunModelCheck(t, applytest.ModelCheckConfig{
			Seed: 42, Ops: ops, FS: vfs.NewCrashableMem(), CrashEvery: 500, ReopenEvery: 1000,
			Open: func(fs vfs.FS) (applier.Engine, error) {
				return OpenPebble("db", PebbleOptions{FS: fs, CacheSize: 1 << 20, MemTableSize: 256 << 10})
			},
		})
	})
	t.Run("disk", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "db")
		applytest.RunModelCheck(t, applytest.ModelCheckConfig{
			Seed: 43, Ops: ops, FS: vfs.Default, ReopenEvery: 1000,
			Open: func(vfs.FS) (applier.Engine, error) {
				return OpenPebble(dir, PebbleOptions{MemTableSize: 256 << 10, DisableWAL: true})
			},
		})
	})
}
