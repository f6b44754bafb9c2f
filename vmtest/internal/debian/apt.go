// Package debian finds, downloads and unpacks Debian packages with apt,
// in a private apt directory that leaves the system's apt state alone.
package debian

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// Source is one line of a sources list.
type Source struct {
	URI        string // e.g. http://deb.debian.org/debian
	Suite      string // e.g. bookworm-security
	Components []string
}

func (s Source) line() string {
	comps := s.Components
	if len(comps) == 0 {
		comps = []string{"main"}
	}
	// Only the Packages indexes: no translations, no DEP-11, no Contents.
	return fmt.Sprintf("deb [target=Packages lang=none] %s %s %s\n", s.URI, s.Suite, strings.Join(comps, " "))
}

// Apt runs apt-get and apt-cache with their sources list, package lists
// and caches under Dir.
type Apt struct {
	Dir     string
	Sources []Source
	Arch    string    // default amd64
	Log     io.Writer // apt's output; nil discards it
}

// Package is one version of a binary package.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

func (p Package) String() string { return p.Name + " " + p.Version }

func (a *Apt) arch() string {
	if a.Arch == "" {
		return "amd64"
	}
	return a.Arch
}

func (a *Apt) options() []string {
	opt := func(k, v string) []string { return []string{"-o", k + "=" + v} }
	var o []string
	for _, kv := range [][2]string{
		{"Dir::Etc::sourcelist", filepath.Join(a.Dir, "sources.list")},
		{"Dir::Etc::sourceparts", filepath.Join(a.Dir, "sources.list.d")},
		{"Dir::State", filepath.Join(a.Dir, "state")},
		{"Dir::State::Lists", filepath.Join(a.Dir, "state", "lists")},
		{"Dir::State::status", filepath.Join(a.Dir, "state", "status")},
		{"Dir::Cache", filepath.Join(a.Dir, "cache")},
		{"APT::Architecture", a.arch()},
		{"APT::Architectures", a.arch()},
		{"APT::Get::List-Cleanup", "true"},
		{"Debug::NoLocking", "true"},
		// Files land where only root can write: do not drop to _apt.
		{"APT::Sandbox::User", "root"},
	} {
		o = append(o, opt(kv[0], kv[1])...)
	}
	return o
}

// prepare writes the sources list and the directories apt wants.
func (a *Apt) prepare() error {
	for _, d := range []string{"sources.list.d", "state/lists/partial", "cache/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(a.Dir, d), 0o755); err != nil {
			return err
		}
	}
	var b strings.Builder
	for _, s := range a.Sources {
		b.WriteString(s.line())
	}
	if err := os.WriteFile(filepath.Join(a.Dir, "sources.list"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	status := filepath.Join(a.Dir, "state", "status")
	if _, err := os.Stat(status); os.IsNotExist(err) {
		return os.WriteFile(status, nil, 0o644)
	}
	return nil
}

func (a *Apt) run(ctx context.Context, dir, tool string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, tool, append(a.options(), args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C")
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errb
	if a.Log != nil {
		cmd.Stdout = io.MultiWriter(&out, a.Log)
		cmd.Stderr = io.MultiWriter(&errb, a.Log)
	}
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// Update downloads the package lists of the sources.
func (a *Apt) Update(ctx context.Context) error {
	if err := a.prepare(); err != nil {
		return err
	}
	_, err := a.run(ctx, a.Dir, "apt-get", "-q", "update")
	return err
}

// Newest returns the newest version of any package whose name matches re,
// from the lists of the last Update.
func (a *Apt) Newest(ctx context.Context, re *regexp.Regexp) (Package, error) {
	if err := a.prepare(); err != nil {
		return Package{}, err
	}
	out, err := a.run(ctx, a.Dir, "apt-cache", "search", "--names-only", re.String())
	if err != nil {
		return Package{}, err
	}
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		name, _, _ := strings.Cut(sc.Text(), " ")
		if re.MatchString(name) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return Package{}, fmt.Errorf("no package matches %s in %s", re, a.describe())
	}
	out, err = a.run(ctx, a.Dir, "apt-cache", append([]string{"madison"}, names...)...)
	if err != nil {
		return Package{}, err
	}
	pkgs := parseMadison(out)
	if len(pkgs) == 0 {
		return Package{}, fmt.Errorf("apt-cache madison gave no versions for %s", strings.Join(names, " "))
	}
	best := pkgs[0]
	for _, p := range pkgs[1:] {
		if CompareVersions(p.Version, best.Version) > 0 {
			best = p
		}
	}
	return best, nil
}

func (a *Apt) describe() string {
	var s []string
	for _, src := range a.Sources {
		s = append(s, src.URI+" "+src.Suite)
	}
	return strings.Join(s, ", ")
}

// parseMadison reads "name | version | uri suite/component arch Packages" lines.
func parseMadison(out []byte) []Package {
	var pkgs []Package
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "|")
		if len(f) < 3 || !strings.Contains(f[2], "Packages") {
			continue
		}
		pkgs = append(pkgs, Package{Name: strings.TrimSpace(f[0]), Version: strings.TrimSpace(f[1])})
	}
	return pkgs
}

// Download fetches the .deb of p into dir and returns its path. The
// lists of the last Update must know p.
func (a *Apt) Download(ctx context.Context, p Package, dir string) (string, error) {
	if err := a.prepare(); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(dir, ".download-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if _, err := a.run(ctx, tmp, "apt-get", "-q", "download", p.Name+"="+p.Version); err != nil {
		return "", err
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("apt-get download %s left %d .deb files", p, len(debs))
	}
	dst := filepath.Join(dir, filepath.Base(debs[0]))
	if err := os.Rename(debs[0], dst); err != nil {
		return "", err
	}
	return dst, nil
}

// Extract unpacks a .deb's files into dir (which must not exist yet),
// atomically: dir appears complete or not at all.
func Extract(ctx context.Context, deb, dir string) error {
	tmp := dir + ".partial"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, tmp).CombinedOutput()
	if err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("dpkg-deb -x %s: %v\n%s", deb, err, out)
	}
	return os.Rename(tmp, dir)
}

// Mirrors are the Debian archive and security archive URIs to use.
type Mirrors struct {
	Archive  string // e.g. http://deb.debian.org/debian
	Security string // e.g. http://deb.debian.org/debian-security
}

// DefaultMirrors is what SystemMirrors falls back to.
var DefaultMirrors = Mirrors{"http://deb.debian.org/debian", "http://deb.debian.org/debian-security"}

var suiteRe = regexp.MustCompile(`^(buster|bullseye|bookworm|trixie|forky|sid|stable|oldstable|testing|unstable)(-updates|-backports|-security|-proposed-updates)?$`)

// SystemMirrors reads the Debian mirrors this machine's apt uses from
// /etc/apt/sources.list and /etc/apt/sources.list.d (one-line and deb822
// files), so the kernels come from the same place as every other package.
func SystemMirrors(etc string) Mirrors {
	var files []string
	files = append(files, filepath.Join(etc, "sources.list"))
	more, _ := filepath.Glob(filepath.Join(etc, "sources.list.d", "*"))
	files = append(files, more...)
	var m Mirrors
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var entries [][2]string // uri, suite
		if strings.HasSuffix(f, ".sources") {
			entries = deb822Entries(string(b))
		} else if strings.HasSuffix(f, ".list") || filepath.Base(f) == "sources.list" {
			entries = oneLineEntries(string(b))
		}
		for _, e := range entries {
			uri, suite := strings.TrimSuffix(e[0], "/"), e[1]
			sm := suiteRe.FindStringSubmatch(suite)
			if sm == nil {
				continue
			}
			if sm[2] == "-security" {
				if m.Security == "" {
					m.Security = uri
				}
			} else if m.Archive == "" {
				m.Archive = uri
			}
		}
	}
	if m.Archive == "" {
		m.Archive = DefaultMirrors.Archive
	}
	if m.Security == "" {
		if strings.HasSuffix(m.Archive, "/debian") {
			m.Security = m.Archive + "-security"
		} else {
			m.Security = DefaultMirrors.Security
		}
	}
	return m
}

func oneLineEntries(s string) [][2]string {
	var out [][2]string
	for _, line := range strings.Split(s, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") { // options
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) == 0 {
				continue
			}
			f = f[1:]
		}
		if len(f) >= 2 {
			out = append(out, [2]string{f[0], f[1]})
		}
	}
	return out
}

func deb822Entries(s string) [][2]string {
	var out [][2]string
	for _, para := range regexp.MustCompile(`\n\s*\n`).Split(s, -1) {
		fields := map[string]string{}
		for _, line := range strings.Split(para, "\n") {
			if strings.HasPrefix(line, "#") {
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if ok && !strings.HasPrefix(k, " ") {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		if !strings.Contains(" "+fields["types"]+" ", " deb ") || strings.EqualFold(fields["enabled"], "no") {
			continue
		}
		for _, uri := range strings.Fields(fields["uris"]) {
			for _, suite := range strings.Fields(fields["suites"]) {
				out = append(out, [2]string{uri, suite})
			}
		}
	}
	return out
}
