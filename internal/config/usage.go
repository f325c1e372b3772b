package config

import (
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Usage is the --help text: every flag strata acts on with its default, then
// the etcd flags it accepts and ignores.
func Usage() string {
	cl := newCmdline()
	var b strings.Builder
	b.WriteString(`Usage:

  strata [flags]
    Start a strata member. Flags follow etcd's; each can also be set by an
    ETCD_<FLAG> environment variable (e.g. ETCD_LISTEN_CLIENT_URLS).

  strata --version
    Print the etcd API version strata implements and strata's own version.

  strata -h | --help
    Print this help.

Flags:
`)
	var ignored []string
	cl.fs.VisitAll(func(f *flag.Flag) {
		switch {
		case cl.hidden[f.Name]:
		case cl.ignored[f.Name]:
			ignored = append(ignored, "--"+f.Name)
		default:
			fmt.Fprintf(&b, "  --%s '%s'\n      %s\n", f.Name, f.DefValue, f.Usage)
		}
	})
	b.WriteString("\nAccepted for compatibility with etcd, and ignored:\n")
	const width = 76
	line := " "
	for _, name := range ignored {
		if len(line)+1+len(name) > width {
			b.WriteString(line + "\n")
			line = " "
		}
		line += " " + name
	}
	b.WriteString(line + "\n")
	return b.String()
}

// VersionText is the --version output. Its first line is etcd's, which tools
// parse (etcd's e2e framework reads the line starting "etcd Version:";
// Kubernetes' hack/lib/etcd.sh takes the third word of the first line
// containing "Version"); strata's own version comes last on its own line.
func VersionText(etcdVersion, strataVersion string) string {
	return fmt.Sprintf("etcd Version: %s\nGit SHA: %s\nGo Version: %s\nGo OS/Arch: %s/%s\nstrata Version: %s\n",
		etcdVersion, gitSHA(), runtime.Version(), runtime.GOOS, runtime.GOARCH, strataVersion)
}

// gitSHA is the VCS revision the binary was built from, when the Go
// toolchain recorded one.
func gitSHA() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && s.Value != "" {
				if len(s.Value) > 7 {
					return s.Value[:7]
				}
				return s.Value
			}
		}
	}
	return "Not provided"
}
