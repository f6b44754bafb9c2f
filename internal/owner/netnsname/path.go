package netnsname

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Path is the network namespace a user names as ss -N and ip netns
// exec do: a value with a "/" is a path, as it is; any other is an ip
// netns name, bound at /run/netns/NAME, or with a host root at
// ROOT/run/netns/NAME when only that exists. When the name is bound
// nowhere, the error says where socktrace looked, with the first of
// those paths.
func Path(value, root string) (string, error) {
	if strings.Contains(value, "/") {
		return value, nil
	}
	tried := []string{"/run/netns/" + value}
	if root = strings.TrimSuffix(root, "/"); root != "" {
		tried = append(tried, root+"/run/netns/"+value)
	}
	for _, p := range tried {
		_, err := os.Stat(p)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return p, fmt.Errorf("network namespace %s: %w", p, err)
		}
	}
	if value == "" {
		return tried[0], errors.New("empty network namespace name")
	}
	return tried[0], fmt.Errorf("no network namespace named %q: no %s (`ip netns list` shows the names)", value, strings.Join(tried, " nor "))
}
