package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"

	"github.com/stratakv/strata/internal/config"
	"github.com/stratakv/strata/internal/version"
	"github.com/stratakv/strata/writernode"
)

// snapshotCmd is `strata snapshot status|restore`, etcdutl's commands for
// the backups `etcdctl snapshot save` takes of strata (docs/operations.md).
func snapshotCmd(args []string, stdout, stderr io.Writer) int {
	usage := "usage: strata snapshot status FILE [-w table|json]\n       strata snapshot restore FILE --data-dir DIR --name NAME --initial-cluster NAME=URL,... --initial-advertise-peer-urls URL --initial-cluster-token TOKEN\n"
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "status":
		return snapshotStatus(args[1:], stdout, stderr)
	case "restore":
		return snapshotRestore(args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, usage)
	return 2
}

// splitFile takes the one positional argument (the file) from anywhere in
// args, as etcdutl (cobra) accepts it before or after the flags.
func splitFile(fs *flag.FlagSet, args []string) (string, error) {
	var file string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return "", err
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		if file != "" {
			return "", fmt.Errorf("expected one snapshot file, got %q and %q", file, args[0])
		}
		file, args = args[0], args[1:]
	}
	if file == "" {
		return "", fmt.Errorf("snapshot file path is required")
	}
	return file, nil
}

func snapshotStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("strata snapshot status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	format := fs.String("w", "table", "Output format: table or json.")
	fs.StringVar(format, "write-out", "table", "Output format: table or json.")
	file, err := splitFile(fs, args)
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 2
	}
	st, err := writernode.StatBackup(file, version.Storage)
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	switch *format {
	case "json":
		b, _ := json.Marshal(st)
		fmt.Fprintln(stdout, string(b))
	case "table":
		row := []string{fmt.Sprintf("%x", st.Hash), fmt.Sprint(st.Revision), fmt.Sprint(st.TotalKey), humanBytes(st.TotalSize), st.Version}
		writeTable(stdout, []string{"HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE", "VERSION"}, row)
	default:
		fmt.Fprintf(stderr, "Error: unsupported output format %q (table or json)\n", *format)
		return 2
	}
	return 0
}

func snapshotRestore(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("strata snapshot restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", config.DefaultName, "Human-readable name for this member.")
	dataDir := fs.String("data-dir", "", "Path to the output data directory (default: <name>.etcd).")
	initial := fs.String("initial-cluster", "", "Initial cluster configuration for restore bootstrap (default: <name>=http://localhost:2380).")
	token := fs.String("initial-cluster-token", "etcd-cluster", "Initial cluster token for the etcd cluster during restore bootstrap.")
	advertise := fs.String("initial-advertise-peer-urls", config.DefaultInitialAdvertisePeerURLs, "List of this member's peer URLs to advertise to the rest of the cluster.")
	file, err := splitFile(fs, args)
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 2
	}
	if *dataDir == "" {
		*dataDir = *name + ".etcd"
	}
	if *initial == "" {
		*initial = *name + "=" + *advertise
	}
	members, err := config.ParseInitialCluster(*initial)
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 2
	}
	cluster := initialCluster(members)
	var adv []string
	for _, s := range strings.Split(*advertise, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil {
			fmt.Fprintf(stderr, "Error: --initial-advertise-peer-urls: %v\n", err)
			return 2
		}
		adv = append(adv, u.String())
	}
	mine := slices.Clone(cluster[*name])
	slices.Sort(mine)
	slices.Sort(adv)
	if !slices.Equal(mine, adv) {
		fmt.Fprintf(stderr, "Error: --initial-cluster must include %s=%s given --initial-advertise-peer-urls=%s\n", *name, *advertise, *advertise)
		return 2
	}
	info, err := writernode.RestoreBackup(file, writernode.RestoreConfig{
		DataDir: *dataDir, Name: *name, InitialCluster: cluster, InitialClusterToken: *token,
	})
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "restored snapshot to %s: %d pairs, %d bytes\n", *dataDir, info.Keys, info.Bytes)
	return 0
}

// writeTable writes etcdctl's boxed table of one row.
func writeTable(w io.Writer, header, row []string) {
	widths := make([]int, len(header))
	for i := range header {
		widths[i] = max(len(header[i]), len(row[i])) + 2
	}
	line := func(l, m, r string) {
		fmt.Fprint(w, l)
		for i, n := range widths {
			fmt.Fprint(w, strings.Repeat("─", n))
			if i < len(widths)-1 {
				fmt.Fprint(w, m)
			}
		}
		fmt.Fprintln(w, r)
	}
	cells := func(cs []string) {
		fmt.Fprint(w, "│")
		for i, c := range cs {
			pad := widths[i] - len(c)
			fmt.Fprintf(w, "%s%s%s│", strings.Repeat(" ", pad/2), c, strings.Repeat(" ", pad-pad/2))
		}
		fmt.Fprintln(w)
	}
	line("┌", "┬", "┐")
	cells(header)
	line("├", "┼", "┤")
	cells(row)
	line("└", "┴", "┘")
}

// humanBytes is the size as etcdctl prints it (go-humanize's SI bytes).
func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}
