package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/socktrace/socktrace/vmtest/internal/debian"
	"github.com/socktrace/socktrace/vmtest/internal/kmod"
)

// Series is a kernel line socktrace supports, and where Debian ships it.
type Series struct {
	Name    string   // "6.1": what KERNELS= names
	Release string   // the Debian release it comes from
	Suites  []string // suites to look in; *-security ones on the security mirror
	Pattern string   // binary package names of the series
}

// allSeries are the kernels tested, oldest first: Debian 11's, 12's, 13's
// (13's is also 12's backport).
var allSeries = []Series{
	{"5.10", "bullseye", []string{"bullseye", "bullseye-security"}, `^linux-image-5\.10\.0-[0-9]+-cloud-amd64$`},
	{"6.1", "bookworm", []string{"bookworm", "bookworm-security"}, `^linux-image-6\.1\.0-[0-9]+-cloud-amd64$`},
	{"6.12", "trixie", []string{"trixie", "trixie-security"}, `^linux-image-6\.12\.[0-9]+\+deb13(\.[0-9]+)?-cloud-amd64$`},
}

// modules are loaded in every VM (with their dependencies): sock_diag
// for TCP, which internal/snapshot and socktrace --once need; netem, for
// the RTT test (delay on the loopback); ctnetlink (with conntrack), for
// the NAT backends' lookups (internal/nat).
var modules = []string{"inet_diag", "tcp_diag", "sch_netem", "nf_conntrack_netlink"}

// Kernel is a series made ready to boot.
type Kernel struct {
	Series  Series
	Package debian.Package
	Root    string // the unpacked package
	Vmlinuz string
	Modules []kmod.Module // to load, in order
	Release string        // uname -r

	Prepare    time.Duration // resolving, downloading and unpacking (0 when cached)
	Downloaded bool
}

// cache is the directory kept between runs.
type cache struct {
	dir     string
	refresh bool          // resolve versions again now
	offline bool          // never use the network; use what the cache has
	ttl     time.Duration // how long a resolved version is trusted
	mirrors debian.Mirrors
	log     func(format string, args ...any)
}

type resolved struct {
	Package debian.Package `json:"package"`
	At      time.Time      `json:"resolved_at"`
}

func (c *cache) resolvedPath() string { return filepath.Join(c.dir, "resolved.json") }

func (c *cache) loadResolved() map[string]resolved {
	m := map[string]resolved{}
	if b, err := os.ReadFile(c.resolvedPath()); err == nil {
		json.Unmarshal(b, &m)
	}
	return m
}

func (c *cache) saveResolved(m map[string]resolved) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := c.resolvedPath() + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, c.resolvedPath())
}

func (c *cache) apt(s Series) *debian.Apt {
	a := &debian.Apt{Dir: filepath.Join(c.dir, "apt", s.Name)}
	for _, suite := range s.Suites {
		uri := c.mirrors.Archive
		if strings.HasSuffix(suite, "-security") {
			uri = c.mirrors.Security
		}
		a.Sources = append(a.Sources, debian.Source{URI: uri, Suite: suite, Components: []string{"main"}})
	}
	return a
}

// prepare resolves the newest kernel of the series, downloads and unpacks
// it unless the cache has it, and picks the modules to load.
func (c *cache) prepare(ctx context.Context, s Series) (*Kernel, error) {
	start := time.Now()
	re := regexp.MustCompile(s.Pattern)
	k := &Kernel{Series: s}
	apt := c.apt(s)
	updated := false

	all := c.loadResolved()
	r, ok := all[s.Name]
	if ok && !re.MatchString(r.Package.Name) {
		ok = false // the series' definition changed
	}
	stale := !ok || c.refresh || time.Since(r.At) > c.ttl
	if stale && !c.offline {
		c.log("%s: looking for the newest %s kernel (%s)", s.Name, s.Release, strings.Join(s.Suites, ", "))
		err := apt.Update(ctx)
		var p debian.Package
		if err == nil {
			updated = true
			p, err = apt.Newest(ctx, re)
		}
		switch {
		case err == nil:
			r = resolved{Package: p, At: time.Now().UTC()}
			all = c.loadResolved()
			all[s.Name] = r
			if err := c.saveResolved(all); err != nil {
				return nil, err
			}
			ok = true
		case ok:
			c.log("%s: cannot look for a newer kernel, using %s from the cache: %v", s.Name, r.Package, err)
		default:
			return nil, fmt.Errorf("find the %s kernel: %w", s.Name, err)
		}
	}
	if !ok {
		return nil, fmt.Errorf("%s: no kernel in the cache %s and offline", s.Name, c.dir)
	}
	k.Package = r.Package

	k.Root = filepath.Join(c.dir, "kernels", fileName(r.Package))
	if _, err := os.Stat(k.Root); err != nil {
		deb, err := c.deb(ctx, apt, r.Package, updated)
		if err != nil {
			return nil, err
		}
		c.log("%s: unpacking %s", s.Name, filepath.Base(deb))
		if err := os.MkdirAll(filepath.Dir(k.Root), 0o755); err != nil {
			return nil, err
		}
		if err := debian.Extract(ctx, deb, k.Root); err != nil {
			return nil, err
		}
		k.Downloaded = true
	}
	c.prune(re, r.Package)

	vmlinuz, _ := filepath.Glob(filepath.Join(k.Root, "boot", "vmlinuz-*"))
	if len(vmlinuz) != 1 {
		return nil, fmt.Errorf("%s: want one boot/vmlinuz-* in %s, found %d", s.Name, k.Root, len(vmlinuz))
	}
	k.Vmlinuz = vmlinuz[0]
	tree, err := kmod.Open(k.Root)
	if err != nil {
		return nil, err
	}
	k.Release = tree.Release
	if k.Modules, err = tree.Resolve(modules); err != nil {
		return nil, err
	}
	if k.Downloaded || updated {
		k.Prepare = time.Since(start)
	}
	return k, nil
}

// deb returns the cached .deb of p, downloading it if needed.
func (c *cache) deb(ctx context.Context, apt *debian.Apt, p debian.Package, updated bool) (string, error) {
	dir := filepath.Join(c.dir, "debs")
	if m, _ := filepath.Glob(filepath.Join(dir, fileName(p)+"_*.deb")); len(m) == 1 {
		return m[0], nil
	}
	if c.offline {
		return "", fmt.Errorf("%s is not in the cache %s, and offline", p, dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	c.log("%s: downloading %s", p.Name, p)
	deb, err := apt.Download(ctx, p, dir)
	if err != nil && !updated {
		// The lists may be gone or old: fetch them and try once more.
		if uerr := apt.Update(ctx); uerr != nil {
			return "", fmt.Errorf("%v; then apt-get update: %v", err, uerr)
		}
		deb, err = apt.Download(ctx, p, dir)
	}
	return deb, err
}

// prune removes cached packages and kernels of the series other than keep.
func (c *cache) prune(re *regexp.Regexp, keep debian.Package) {
	for _, sub := range []string{"debs", "kernels"} {
		entries, _ := os.ReadDir(filepath.Join(c.dir, sub))
		for _, e := range entries {
			name, _, _ := strings.Cut(e.Name(), "_")
			if re.MatchString(name) && !strings.HasPrefix(e.Name(), fileName(keep)+"_") && e.Name() != fileName(keep) {
				c.log("removing %s from the cache", e.Name())
				os.RemoveAll(filepath.Join(c.dir, sub, e.Name()))
			}
		}
	}
}

// fileName is name_version, as apt-get download names files (without the
// architecture), with an epoch's colon escaped as apt does.
func fileName(p debian.Package) string {
	return p.Name + "_" + strings.ReplaceAll(p.Version, ":", "%3a")
}
