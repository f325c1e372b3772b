package snapshot

import "io"

// Pair is a key and a value, for WriteUnchecked.
type Pair struct{ Key, Value []byte }

// WriteUnchecked writes pairs as a stream without checking their order, so
// tests can make streams that are well-formed but out of order.
func WriteUnchecked(w io.Writer, opts WriteOptions, pairs []Pair) (Info, error) {
	sw, err := newStreamWriter(w, opts)
	if err != nil {
		return Info{}, err
	}
	for _, p := range pairs {
		if err := sw.add(p.Key, p.Value); err != nil {
			return Info{}, err
		}
	}
	return sw.finish()
}

// SetInstallBatchBytes sets Install's batch bound until the returned
// function restores it.
func SetInstallBatchBytes(n int) (restore func()) {
	old := installBatchBytes
	installBatchBytes = n
	return func() { installBatchBytes = old }
}

// BlockHeaderLen and HeaderLen are the format's fixed record lengths.
const (
	HeaderLen      = headerLen
	BlockHeaderLen = blockHeaderLen
)
