package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// parseURLs parses a comma-separated URL list with etcd's rules: the scheme
// is http, https, unix or unixs; http(s) URLs are "host:port" with no path;
// the result is sorted and free of duplicates.
func parseURLs(s string) ([]url.URL, error) {
	parts := strings.Split(s, ",")
	out := make([]url.URL, 0, len(parts))
	seen := make(map[string]bool, len(parts))
	for _, in := range parts {
		in = strings.TrimSpace(in)
		u, err := url.Parse(in)
		if err != nil {
			return nil, err
		}
		switch u.Scheme {
		case "http", "https":
			if _, _, err := net.SplitHostPort(u.Host); err != nil {
				return nil, fmt.Errorf(`URL address does not have the form "host:port": %s`, in)
			}
			if u.Path != "" {
				return nil, fmt.Errorf("URL must not contain a path: %s", in)
			}
		case "unix", "unixs":
		default:
			return nil, fmt.Errorf("URL scheme must be http, https, unix, or unixs: %s", in)
		}
		if seen[u.String()] {
			continue
		}
		seen[u.String()] = true
		out = append(out, *u)
	}
	sortURLs(out)
	return out, nil
}

func sortURLs(us []url.URL) {
	sort.Slice(us, func(i, j int) bool { return us[i].String() < us[j].String() })
}

func urlStrings(us []url.URL) []string {
	out := make([]string, len(us))
	for i := range us {
		out[i] = us[i].String()
	}
	return out
}

// urlsValue is a URL-list flag. Setting it to one of its exceptions (etcd
// allows "" for every URL flag) is accepted and leaves the value unchanged,
// as in etcd.
type urlsValue struct {
	dst        *[]url.URL
	exceptions []string
}

func newURLsValue(dst *[]url.URL, def string, exceptions ...string) *urlsValue {
	v := &urlsValue{dst: dst, exceptions: exceptions}
	*dst = nil
	if def != "" {
		if err := v.Set(def); err != nil {
			panic(fmt.Sprintf("config: bad default URL %q: %v", def, err))
		}
	}
	return v
}

func (v *urlsValue) Set(s string) error {
	if slices.Contains(v.exceptions, s) {
		return nil
	}
	us, err := parseURLs(s)
	if err != nil {
		return err
	}
	*v.dst = us
	return nil
}

func (v *urlsValue) String() string {
	if v == nil || v.dst == nil {
		return ""
	}
	return strings.Join(urlStrings(*v.dst), ",")
}

// corsValue is --cors: "*" (allow every origin) or a list of origin URLs,
// which etcd checks like any URL list.
type corsValue struct{ dst *[]string }

func (v *corsValue) Set(s string) error {
	if s == "*" {
		*v.dst = []string{"*"}
		return nil
	}
	us, err := parseURLs(s)
	if err != nil {
		return err
	}
	*v.dst = urlStrings(us)
	return nil
}

func (v *corsValue) String() string {
	if v == nil || v.dst == nil {
		return ""
	}
	return strings.Join(*v.dst, ",")
}

// stringsValue is a comma-separated list flag. With unique set, the list is
// sorted and de-duplicated (etcd's UniqueStringsValue); otherwise it is kept
// as given (etcd's StringsValue).
type stringsValue struct {
	dst    *[]string
	unique bool
}

func newStringsValue(dst *[]string, def string, unique bool) *stringsValue {
	v := &stringsValue{dst: dst, unique: unique}
	*dst = nil
	if def != "" {
		_ = v.Set(def)
	}
	return v
}

func (v *stringsValue) Set(s string) error {
	parts := strings.Split(s, ",")
	if v.unique {
		slices.Sort(parts)
		parts = slices.Compact(parts)
	}
	*v.dst = parts
	return nil
}

func (v *stringsValue) String() string {
	if v == nil || v.dst == nil {
		return ""
	}
	return strings.Join(*v.dst, ",")
}

// choiceValue is a string flag restricted to a fixed set of values.
type choiceValue struct {
	dst    *string
	valids []string
}

func newChoiceValue(dst *string, def string, valids ...string) *choiceValue {
	*dst = def
	return &choiceValue{dst: dst, valids: valids}
}

func (v *choiceValue) Set(s string) error {
	if !slices.Contains(v.valids, s) {
		return fmt.Errorf("must be one of %s", quoteJoin(v.valids))
	}
	*v.dst = s
	return nil
}

func (v *choiceValue) String() string {
	if v == nil || v.dst == nil {
		return ""
	}
	return *v.dst
}

// choicesValue is a comma-separated list whose every element must be one of
// a fixed set; values accumulate over repeats (etcd's SelectiveStringsValue,
// used only by the ignored --v2-deprecation).
type choicesValue struct {
	vs     []string
	valids []string
}

func (v *choicesValue) Set(s string) error {
	for _, e := range strings.Split(s, ",") {
		if !slices.Contains(v.valids, e) {
			return fmt.Errorf("invalid value %q", e)
		}
		v.vs = append(v.vs, e)
	}
	slices.Sort(v.vs)
	return nil
}

func (v *choicesValue) String() string {
	if v == nil {
		return ""
	}
	return strings.Join(v.vs, ",")
}

// uint32Value is etcd's uint32 flag (--max-concurrent-streams).
type uint32Value struct{ dst *uint32 }

func (v uint32Value) Set(s string) error {
	n, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return err
	}
	*v.dst = uint32(n)
	return nil
}

func (v uint32Value) String() string {
	if v.dst == nil {
		return "0"
	}
	return strconv.FormatUint(uint64(*v.dst), 10)
}

// legacyValue is a flag name from etcd's pre-v3 command line that etcd still
// accepts and ignores. Like etcd's, it is a boolean flag: it takes a value
// only in the --f=v form.
type legacyValue struct{}

func (legacyValue) Set(string) error { return nil }
func (legacyValue) String() string   { return "" }
func (legacyValue) IsBoolFlag() bool { return true }

func quoteJoin(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	switch len(q) {
	case 0:
		return ""
	case 1:
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}
