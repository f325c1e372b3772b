package failpoint

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Loss says how a crash loses the part of a file past its last fsync.
type Loss byte

const (
	// Truncate: the file ends at the last fsync (an appended file).
	Truncate Loss = 't'
	// Zero: the bytes past it read as zeroes (a preallocated file, as
	// the raft WAL's segments are).
	Zero Loss = 'z'
)

// A ledger is a text file of records, one per line:
//
//	sync <t|z> <offset> <path>    an fsync makes path durable up to offset
//	create <path>                 path was created (nothing durable yet)
//	rename <old>\t<new>           old was renamed to new
//
// Each record is written (one write(2)) before the operation it
// describes, so a kill between the two leaves the ledger claiming no more
// loss than a real crash could cause.

// Durable is what a ledger says of one file.
type Durable struct {
	Offset int64
	Loss   Loss
}

// ReadLedger replays a ledger: the durable prefix of every file it names,
// under the file's last name. A file's durable prefix only grows until it
// is created (again) or renamed over: every file the ledger covers is
// written forward only (a WAL repair cuts only what was never durable),
// and two fsyncs may record their offsets in either order.
func ReadLedger(r io.Reader) (map[string]Durable, error) {
	files := map[string]Durable{}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		op, rest, _ := strings.Cut(line, " ")
		switch op {
		case "sync":
			f := strings.SplitN(rest, " ", 3)
			if len(f) != 3 || len(f[0]) != 1 {
				return nil, fmt.Errorf("failpoint: bad ledger line %q", line)
			}
			off, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("failpoint: bad ledger line %q", line)
			}
			d := files[f[2]]
			files[f[2]] = Durable{Offset: max(off, d.Offset), Loss: Loss(f[0][0])}
		case "create":
			files[rest] = Durable{Loss: Truncate}
		case "rename":
			from, to, ok := strings.Cut(rest, "\t")
			if !ok {
				return nil, fmt.Errorf("failpoint: bad ledger line %q", line)
			}
			if d, ok := files[from]; ok {
				files[to] = d
				delete(files, from)
			} else {
				delete(files, to) // replaced by a file the ledger does not know
			}
		case "":
			// An empty last line: the process died mid-record? A
			// record is one write, so it cannot; tolerate it anyway.
		default:
			return nil, fmt.Errorf("failpoint: bad ledger line %q", line)
		}
	}
	return files, sc.Err()
}

// LoseUnsynced cuts every file the ledger at path names back to what its
// last fsync made durable (files since removed are skipped), as a power
// loss would after kill -9: the page cache that kept the rest is gone. It
// returns how many bytes were lost. The process that wrote the ledger must
// be dead.
func LoseUnsynced(path string) (lost int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	files, err := ReadLedger(f)
	f.Close()
	if err != nil {
		return 0, err
	}
	for name, d := range files {
		st, err := os.Stat(name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return lost, err
		}
		if !st.Mode().IsRegular() || st.Size() <= d.Offset {
			continue
		}
		n := st.Size() - d.Offset
		switch d.Loss {
		case Truncate:
			err = os.Truncate(name, d.Offset)
		case Zero:
			n, err = zeroFrom(name, d.Offset, n)
		default:
			err = fmt.Errorf("failpoint: %s: unknown loss %q", name, d.Loss)
		}
		if err != nil {
			return lost, err
		}
		lost += n
	}
	return lost, nil
}

// zeroFrom zeroes the n bytes of name from off (keeping the size: the
// file is preallocated, and mostly zeroes already) and returns how many
// of them were not zero before: up to the last that was not.
func zeroFrom(name string, off, n int64) (lost int64, err error) {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	buf, zero := make([]byte, 64<<10), make([]byte, 64<<10)
	for done := int64(0); done < n; {
		c := min(n-done, int64(len(buf)))
		if _, err := f.ReadAt(buf[:c], off+done); err != nil {
			return lost, err
		}
		if i := lastNonZero(buf[:c]); i >= 0 {
			if _, err := f.WriteAt(zero[:c], off+done); err != nil {
				return lost, err
			}
			lost = done + int64(i) + 1
		}
		done += c
	}
	return lost, nil
}

func lastNonZero(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] != 0 {
			return i
		}
	}
	return -1
}
