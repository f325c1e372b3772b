package snapshot

import (
	"bytes"
	"testing"
)

// FuzzDecodeBlock fuzzes what lies behind a block's checksum, which FuzzRead
// rarely gets past: decompression with any claimed length, and pair
// decoding. Neither may panic, decompression must yield exactly the claimed
// length or fail, and pair decoding must stay within the block.
func FuzzDecodeBlock(f *testing.F) {
	raw := appendPair(appendPair(nil, []byte("k/a"), []byte("1")), []byte("k/b"), bytes.Repeat([]byte("x"), 300))
	for c := range Compression(numCompressions) {
		frame := compressBlock(nil, c, raw)
		f.Add(uint8(c), uint32(len(raw)), frame[blockHeaderLen:])
	}
	f.Fuzz(func(t *testing.T, c uint8, rawLen uint32, payload []byte) {
		// Keep the fuzzer fast: the reader's real bound is MaxBlockSize.
		rawLen %= 1 << 20
		if rawLen == 0 {
			return
		}
		out, err := decompressBlock(nil, Compression(c%numCompressions), payload, int(rawLen))
		if err != nil {
			return
		}
		if len(out) != int(rawLen) {
			t.Fatalf("decoded %d bytes, claimed %d", len(out), rawLen)
		}
		for b := out; len(b) > 0; {
			k, v, rest, err := nextPair(b)
			if err != nil {
				return
			}
			if len(k)+len(v) > len(b) || len(rest) >= len(b) {
				t.Fatalf("pair out of bounds")
			}
			b = rest
		}
	})
}
