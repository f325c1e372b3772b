package config

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// envPrefix is the prefix of the environment variables that set flags.
const envPrefix = "ETCD"

// Errors Parse returns that a caller tells apart.
var (
	// ErrHelp is returned by Parse when the command line asks for help (-h,
	// -help, --help). The caller prints Usage() to stdout and exits 0.
	ErrHelp = errors.New("help requested")
	// ErrVersion is returned by Parse when the command line has --version.
	// The caller prints VersionText to stdout and exits 0.
	ErrVersion = errors.New("version requested")
	// ErrUnsetAdvertiseClientURLs is returned when --listen-client-urls is
	// set (on the command line or through ETCD_LISTEN_CLIENT_URLS) and
	// --advertise-client-urls is not. The text is etcd's.
	ErrUnsetAdvertiseClientURLs = errors.New("--advertise-client-urls is required when --listen-client-urls is set explicitly")
	// ErrConflictBootstrapFlags is returned when more than one of
	// --initial-cluster, --discovery-endpoints and --discovery-srv is set.
	// The text is etcd's.
	ErrConflictBootstrapFlags = errors.New(`multiple discovery or bootstrap flags are set. Choose one of "initial-cluster", "discovery-endpoints" or "discovery-srv"`)
	// ErrEnvConflict is returned when a flag is set both on the command line
	// and through its ETCD_* variable. The text is etcd's.
	ErrEnvConflict = errors.New("conflicting environment variable is shadowed by corresponding command-line flag (either unset environment variable or disable flag)")
)

// A SyntaxError is returned by Parse for a command line the flag package
// rejects: an unknown flag, a missing or malformed value. etcd exits with
// status 2 on these and 1 on every other configuration error.
type SyntaxError struct{ Err error }

func (e *SyntaxError) Error() string { return e.Err.Error() }
func (e *SyntaxError) Unwrap() error { return e.Err }

// ExitCode is the status etcd exits with after Parse returned err: 0 for
// ErrHelp and ErrVersion, 2 for a SyntaxError, 1 for anything else.
func ExitCode(err error) int {
	var se *SyntaxError
	switch {
	case err == nil, errors.Is(err, ErrHelp), errors.Is(err, ErrVersion):
		return 0
	case errors.As(err, &se):
		return 2
	}
	return 1
}

// Parse parses a server command line (args without argv[0]) and the
// environment (os.Environ's form, "KEY=value") into a validated Config, with
// etcd v3.7.3's rules (see the package comment).
func Parse(args []string, environ []string) (*Config, error) {
	cl := newCmdline()
	fs, cfg := cl.fs, cl.cfg

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, ErrHelp
		}
		return nil, &SyntaxError{Err: err}
	}
	if fs.NArg() != 0 {
		return nil, fmt.Errorf("%q is not a valid flag", fs.Arg(0))
	}
	if cl.printVersion {
		return nil, ErrVersion
	}

	env := newEnv(environ)
	if cl.configFile == "" {
		cl.configFile = env.lookup(envName("config-file"))
	}
	if cl.configFile != "" {
		return nil, fmt.Errorf("--config-file %q: configuration files are not supported by strata; use flags or ETCD_* environment variables", cl.configFile)
	}
	if err := cl.setFromEnv(env); err != nil {
		return nil, err
	}

	cfg.ExplicitlySet = make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { cfg.ExplicitlySet[f.Name] = true })

	// An explicit --listen-client-urls drops the default advertise URL, so
	// that a member never advertises an address it does not listen on.
	if cfg.ExplicitlySet["listen-client-urls"] && !cfg.ExplicitlySet["advertise-client-urls"] {
		cfg.AdvertiseClientURLs = nil
	}
	// Discovery replaces the default --initial-cluster.
	if (cl.discoverySRV != "" || cl.discoverySRVName != "" || len(cl.discoveryEndpoints) > 0) && !cfg.ExplicitlySet["initial-cluster"] {
		cfg.InitialCluster = ""
	}
	cfg.FeatureGates = cl.features.effective()

	if err := cl.validate(); err != nil {
		return nil, err
	}
	if err := cl.validateStrata(); err != nil {
		return nil, err
	}
	if err := cl.resolve(); err != nil {
		return nil, err
	}
	cl.noteIgnored()
	return cfg, nil
}

// env is the environment as os.Getenv sees it: the first entry for a key
// wins.
type env struct {
	entries []string
	vals    map[string]string
}

func newEnv(environ []string) *env {
	e := &env{entries: environ, vals: make(map[string]string, len(environ))}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		if _, dup := e.vals[k]; !dup {
			e.vals[k] = v
		}
	}
	return e
}

func (e *env) lookup(key string) string { return e.vals[key] }

// envName is the variable that sets a flag: ETCD_ and the flag name in upper
// case with '-' as '_'.
func envName(flagName string) string {
	return envPrefix + "_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// setFromEnv applies the ETCD_* variables of the flags the command line did
// not set, then checks the rest of the environment as etcd does.
func (cl *cmdline) setFromEnv(e *env) error {
	const versionKey = "ETCD_VERSION"
	if v := e.lookup(versionKey); v != "" {
		// etcd unsets it before looking at the environment: it must never
		// turn a server start into a version print.
		cl.cfg.notice(zapcore.WarnLevel, "cannot set special environment variable",
			zap.String("key", versionKey), zap.String("value", v))
		delete(e.vals, versionKey)
		e.entries = slices.DeleteFunc(slices.Clone(e.entries), func(kv string) bool {
			return strings.HasPrefix(kv, versionKey+"=")
		})
	}

	onCommandLine := make(map[string]bool)
	cl.fs.Visit(func(f *flag.Flag) { onCommandLine[envName(f.Name)] = true })

	used := make(map[string]bool)
	var setErr error
	cl.fs.VisitAll(func(f *flag.Flag) {
		key := envName(f.Name)
		if onCommandLine[key] {
			return
		}
		val := e.lookup(key)
		if val == "" {
			return
		}
		used[key] = true
		if err := cl.fs.Set(f.Name, val); err != nil {
			if setErr == nil {
				setErr = fmt.Errorf("invalid value %q for %s: %w", val, key, err)
			}
			return
		}
		cl.cfg.notice(zapcore.InfoLevel, "recognized and used environment variable",
			zap.String("variable-name", key), zap.String("variable-value", val))
	})

	for _, kv := range e.entries {
		key, _, ok := strings.Cut(kv, "=")
		if !ok {
			cl.cfg.notice(zapcore.WarnLevel, "found invalid environment variable",
				zap.String("environment-variable", kv))
		}
		if used[key] {
			continue
		}
		if onCommandLine[key] {
			// Even an empty variable conflicts: etcd exits on it.
			return fmt.Errorf("%w: %s", ErrEnvConflict, key)
		}
		if strings.HasPrefix(kv, envPrefix+"_") {
			cl.cfg.notice(zapcore.WarnLevel, "unrecognized environment variable",
				zap.String("environment-variable", kv))
		}
	}
	return setErr
}

// noteIgnored records the explicitly set flags strata does not act on.
func (cl *cmdline) noteIgnored() {
	cfg := cl.cfg
	for name := range cfg.ExplicitlySet {
		if cl.ignored[name] {
			cfg.Ignored = append(cfg.Ignored, name)
		}
	}
	slices.Sort(cfg.Ignored)
	for _, name := range cfg.Ignored {
		if msg, ok := deprecatedFlags[name]; ok {
			cfg.notice(zapcore.WarnLevel, msg)
		}
		cfg.notice(zapcore.DebugLevel, "flag accepted for etcd compatibility and ignored",
			zap.String("flag-name", name))
	}
}

// deprecatedFlags are the flags etcd v3.7.3 warns about when they are set.
var deprecatedFlags = map[string]string{
	"max-snapshots":  "--max-snapshots is deprecated in etcd 3.6 and goes away in 3.8",
	"v2-deprecation": "--v2-deprecation is deprecated in etcd and goes away in 3.8; its value is ignored",
}
