// Package config owns strata's server command line: the flags, their
// defaults, the ETCD_* environment variables and the validation that turns an
// argv into a Config.
//
// The contract is etcd v3.7.3's command line, because tools written for etcd
// (its e2e and robustness frameworks, Kubernetes' hack/lib/etcd.sh, operators)
// start "an etcd binary" and expect it to behave like one:
//
//   - Every flag etcd v3.7.3 registers is registered here, with etcd's name,
//     type and default. Flags strata has a use for land in Config; the rest are
//     parsed (so a malformed value fails exactly as in etcd), ignored, and
//     reported in Config.Ignored and as a debug Notice. A name etcd does not
//     know fails with the flag package's "flag provided but not defined: -xyz".
//     The removed --experimental-* names are not accepted (neither does etcd).
//   - Parsing is the stdlib flag package, as in etcd: --f=v and --f v, -f
//     single-dash forms, bare booleans (a boolean takes its value only with
//     "="), and a repeated flag's last value wins.
//   - ETCD_<FLAG_NAME> (upper case, '-' as '_') sets a flag that the command
//     line did not set; the variable counts as an explicit setting. A variable
//     for a flag that the command line also set is an error (etcd exits on
//     it), even when the variable is empty. Other ETCD_* variables are warned
//     about, as etcd does (including ETCD_VERIFY and ETCD_UNSUPPORTED_ARCH,
//     which etcd's test framework always passes). ETCD_VERSION never sets
//     --version. strata's own flags follow the same rule (ETCD_ROLE).
//   - Defaults that etcd derives after parsing are derived the same way:
//     --data-dir "${name}.etcd"; --initial-cluster rebuilt from --name and
//     --initial-advertise-peer-urls when --name is not "default" and
//     --initial-cluster still has its default text; an explicit
//     --listen-client-urls without --advertise-client-urls is an error.
//
// Parse has no side effects: it reads only the argv and environment it is
// given, prints nothing and logs nothing. What etcd would log while parsing is
// returned as Notices for the caller to log once its logger exists.
//
// Parse does not check that the member belongs to --initial-cluster. etcd
// checks that only when it bootstraps an empty data dir (on restart the data
// dir wins over the bootstrap flags, and etcd's test framework passes the same
// flags again); the caller runs Config.VerifyInitialCluster in that case.
//
// Not supported, and rejected with a clear error rather than ignored, because
// ignoring them would start a member with the wrong cluster: --config-file
// (and ETCD_CONFIG_FILE), and discovery (--discovery-endpoints,
// --discovery-srv). etcd's replacement of a default advertise host when
// listening on 0.0.0.0 is not done, and URL comparisons in
// VerifyInitialCluster are textual (etcd also resolves host names).
package config
