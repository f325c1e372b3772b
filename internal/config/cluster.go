package config

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
)

// initialClusterFromName is "name=u1,name=u2" over the member's advertised
// peer URLs.
func initialClusterFromName(name string, peerURLs []url.URL) string {
	if name == "" {
		name = DefaultName
	}
	pairs := make([]string, len(peerURLs))
	for i := range peerURLs {
		pairs[i] = name + "=" + peerURLs[i].String()
	}
	return strings.Join(pairs, ",")
}

// parseInitialCluster parses "name=url,name=url,...": a name may appear
// several times, once per peer URL. Empty items are skipped, as in etcd.
func parseInitialCluster(s string) (map[string][]url.URL, error) {
	raw := make(map[string][]string)
	var names []string
	for _, item := range strings.Split(s, ",") {
		if item == "" {
			continue
		}
		name, u, _ := strings.Cut(item, "=")
		if _, seen := raw[name]; !seen {
			names = append(names, name)
		}
		raw[name] = append(raw[name], u)
	}
	out := make(map[string][]url.URL, len(raw))
	for _, name := range names {
		us, err := parseURLs(strings.Join(raw[name], ","))
		if err != nil {
			return nil, err
		}
		out[name] = us
	}
	return out, nil
}

// membersString is the initial cluster in etcd's canonical form: sorted
// "name=url" pairs.
func membersString(m map[string][]url.URL) string {
	var pairs []string
	for name, us := range m {
		for _, u := range us {
			pairs = append(pairs, name+"="+u.String())
		}
	}
	slices.Sort(pairs)
	return strings.Join(pairs, ",")
}

// VerifyInitialCluster checks that this member is part of --initial-cluster:
// its name is listed and, when bootstrapping a new cluster, with exactly its
// --initial-advertise-peer-urls; no peer URL appears twice. Error texts are
// etcd's.
//
// Call it only when the data dir holds no member yet: once a member has
// state, the data dir wins over the bootstrap flags and etcd checks nothing
// (its test framework restarts members with the original flags).
//
// Unlike etcd, URLs are compared as text; etcd also resolves host names, so
// "localhost" and "127.0.0.1" match there and not here.
func (c *Config) VerifyInitialCluster() error {
	if _, ok := c.InitialClusterMembers[c.Name]; !ok {
		return fmt.Errorf("couldn't find local name %q in the initial cluster configuration", c.Name)
	}
	if c.IsNewCluster() {
		if err := c.advertiseMatchesCluster(); err != nil {
			return err
		}
	}
	seen := make(map[string]bool)
	for _, name := range slices.Sorted(maps.Keys(c.InitialClusterMembers)) {
		for _, u := range c.InitialClusterMembers[name] {
			if seen[u.String()] {
				return fmt.Errorf("initial cluster %s has duplicate url", membersString(c.InitialClusterMembers))
			}
			seen[u.String()] = true
		}
	}
	return nil
}

func (c *Config) advertiseMatchesCluster() error {
	listed := urlStrings(c.InitialClusterMembers[c.Name])
	advertised := urlStrings(c.InitialAdvertisePeerURLs)
	if slices.Equal(listed, advertised) {
		return nil
	}
	// Both lists are sorted and free of duplicates.
	var missing []string
	for _, u := range listed {
		if !slices.Contains(advertised, u) {
			missing = append(missing, c.Name+"="+u)
		}
	}
	if len(missing) > 0 {
		// etcd appends why its resolving comparison failed.
		why := fmt.Sprintf("len(%q) != len(%q)", advertised, listed)
		if len(advertised) == len(listed) {
			for i := range advertised {
				if advertised[i] != listed[i] {
					why = fmt.Sprintf("resolved urls: %q != %q", advertised[i], listed[i])
					break
				}
			}
		}
		return fmt.Errorf("--initial-cluster has %s but missing from --initial-advertise-peer-urls=%s (%s)",
			strings.Join(missing, ","), strings.Join(advertised, ","), why)
	}
	for _, u := range advertised {
		if !slices.Contains(listed, u) {
			missing = append(missing, u)
		}
	}
	return fmt.Errorf("--initial-advertise-peer-urls has %s but missing from --initial-cluster=%s",
		strings.Join(missing, ","), initialClusterFromName(c.Name, c.InitialAdvertisePeerURLs))
}

// ParseInitialCluster parses an --initial-cluster value
// ("name=url,name=url,..."; a name may repeat with more URLs).
func ParseInitialCluster(s string) (map[string][]url.URL, error) { return parseInitialCluster(s) }
